//! Backend sessions the gateway keeps for 2026-07-28 clients.
//!
//! A session-era backend needs `initialize` before anything else, and a
//! stdio server is a process of its own. So the gateway opens a session for
//! the client (an ordinary [`Session`], with its route, policy, audit, token
//! deadline and idle reaping), initializes it with the capabilities the client
//! declares, and keeps it per person, service and capability set: a person's
//! next request reuses it, and two people never share one (unless the
//! operator made the service `shared`, as for the session era).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};

use super::request::Modern;
use crate::caller::UserId;
use crate::config::ServiceName;
use crate::jsonrpc::{self, Message, RequestId, SUPPORTED_VERSIONS};
use crate::session::Session;

/// Who a kept session is for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub service: ServiceName,
    /// `None` on a gateway without `proxy.auth` (everyone is anonymous).
    pub user: Option<UserId>,
    pub capabilities: String,
}

/// An initialized backend session.
pub struct Kept {
    pub session: Arc<Session>,
    /// The backend's `initialize` result (what `server/discover` answers from).
    pub init: Value,
    log_level: Mutex<Option<String>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError<E> {
    #[error("could not open a backend session")]
    Open(E),
    /// The backend refused or failed `initialize`: its error, as sent.
    #[error("the backend did not initialize")]
    Init(Option<Bytes>),
}

impl Kept {
    /// A request id the backend session has never seen.
    pub fn next_id(&self) -> RequestId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        jsonrpc::string_id(&format!("mcpgate-{n}"))
    }

    /// Stop a call the client gave up on (closed its stream, never retried).
    pub fn cancel(&self, internal: &RequestId, reason: &str) {
        let msg = jsonrpc::notification(
            "notifications/cancelled",
            json!({"requestId": jsonrpc::id_value(internal), "reason": reason}),
        );
        let session = self.session.clone();
        tokio::spawn(async move {
            let _ = session.submit(vec![msg]).await;
        });
    }

    /// Answer a request the backend sent (with the client's answer, or the
    /// gateway's own, e.g. to `ping`).
    pub async fn answer(&self, backend_id: &RequestId, outcome: Result<&Value, (i64, &str)>) {
        let msg = match outcome {
            Ok(result) => jsonrpc::result_response(backend_id, result),
            Err((code, message)) => jsonrpc::error_response(Some(backend_id), code, message, None),
        };
        let _ = self.session.submit(vec![msg]).await;
    }

    /// Tell the backend the log level this request asks for, when it differs
    /// from the last one (the backend session is the person's, reused).
    pub async fn log_level(&self, level: &str) {
        if self.init.pointer("/capabilities/logging").is_none() {
            return;
        }
        {
            let mut current = self.log_level.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_deref() == Some(level) {
                return;
            }
            *current = Some(level.to_string());
        }
        let id = self.next_id();
        let Some(msg) =
            jsonrpc::from_value(&json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&id),
            "method": "logging/setLevel", "params": {"level": level}}))
        else {
            return;
        };
        if let Ok(Some(mut rx)) = self.session.submit(vec![msg]).await {
            while let Some(item) = rx.rx.recv().await {
                if item.is_response {
                    break;
                }
            }
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Kept>>>>;

#[derive(Default)]
pub struct Pool {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Pool {
    /// The kept session for `key`, opened with `open` and initialized with the
    /// request's capabilities when there is none (or it ended).
    pub async fn get<F, Fut, E>(
        &self,
        key: Key,
        req: &Modern,
        open: F,
    ) -> Result<Arc<Kept>, PoolError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Session>, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            // Forget ended sessions (idle, token expired, backend gone) now and then.
            if slots.len() > 64 {
                slots.retain(|_, s| {
                    s.try_lock()
                        .map(|k| k.as_ref().is_some_and(|k| !k.session.is_closed()))
                        .unwrap_or(true)
                });
            }
            slots.entry(key).or_default().clone()
        };
        // One opening per key at a time: parallel first requests share it.
        let mut kept = slot.lock().await;
        if let Some(k) = kept.as_ref()
            && !k.session.is_closed()
        {
            return Ok(k.clone());
        }
        let session = open().await.map_err(PoolError::Open)?;
        session.set_bridged();
        let init = initialize(&session, req).await;
        let init = match init {
            Ok(v) => v,
            Err(e) => {
                session.close("initialize failed").await;
                return Err(e);
            }
        };
        let k = Arc::new(Kept {
            session,
            init,
            log_level: Mutex::new(None),
            next_id: AtomicU64::new(0),
        });
        *kept = Some(k.clone());
        Ok(k)
    }

    /// Kept sessions open now.
    pub fn len(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter(|s| {
                s.try_lock()
                    .map(|k| k.as_ref().is_some_and(|k| !k.session.is_closed()))
                    .unwrap_or(true)
            })
            .count()
    }
}

/// A plain session-era `initialize` (no 2026-07-28 `_meta`: a session-era
/// server may refuse what it does not know), then `notifications/initialized`.
async fn initialize<E>(session: &Session, req: &Modern) -> Result<Value, PoolError<E>> {
    let client_info = req
        .client_info
        .clone()
        .unwrap_or_else(|| json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}));
    let init = jsonrpc::from_value(&json!({"jsonrpc": "2.0", "id": "mcpgate-initialize",
    "method": "initialize", "params": {
        "protocolVersion": SUPPORTED_VERSIONS[0],
        "capabilities": session_capabilities(&req.capabilities),
        "clientInfo": client_info,
    }}))
    .ok_or(PoolError::Init(None))?;
    let mut rx = match session.submit(vec![init]).await {
        Ok(Some(rx)) => rx,
        _ => return Err(PoolError::Init(None)),
    };
    let answer = loop {
        match rx.rx.recv().await {
            Some(item) if item.is_response => break item.data,
            Some(_) => continue,
            None => return Err(PoolError::Init(None)),
        }
    };
    let parsed: Value = serde_json::from_slice(&answer).map_err(|_| PoolError::Init(None))?;
    let Some(result) = parsed.get("result").cloned() else {
        return Err(PoolError::Init(Some(answer)));
    };
    let done = jsonrpc::notification("notifications/initialized", json!({}));
    let _ = session.submit(vec![done]).await;
    Ok(result)
}

/// The capabilities a session-era server understands, from a 2026-07-28
/// client's: the same names (elicitation, sampling, roots), without the
/// modern-only ones the old schema lacks.
fn session_capabilities(caps: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = caps.as_object() {
        for (k, v) in m {
            if matches!(
                k.as_str(),
                "elicitation" | "sampling" | "roots" | "experimental"
            ) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Build a backend request from a checked 2026-07-28 one.
pub fn backend_request(id: &RequestId, req: &Modern) -> Option<Message> {
    jsonrpc::from_value(&json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(id),
        "method": req.method, "params": Value::Object(req.params.clone())}))
}
