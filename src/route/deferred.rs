//! A session whose person has not set their token for the service yet.
//!
//! Refusing `initialize` would leave the person with a connection error and no
//! explanation. Instead the gateway answers the handshake itself and offers one
//! tool, whose description and result say where to set the token
//! (`/my/tokens`): models relay that to the person. When the token is saved, the
//! real backend starts (its `initialize` replayed from the client's own), and
//! the client gets `notifications/tools/list_changed`, so the service works
//! without reconnecting.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::json;
use tokio::sync::oneshot;

use super::{Route, Routes};
use crate::backend::{BackendError, Inbox, InboxRef};
use crate::caller::{Caller, PersonalToken};
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::service::Service;

/// The id the replayed `initialize` carries; its answer is kept from the client,
/// which already has one.
const SETUP_INIT_ID: &str = "\"mcpgate-setup-initialize\"";

#[derive(Debug, thiserror::Error)]
pub enum DeferredError {
    #[error("could not start the backend: {0}")]
    Start(String),
    #[error("cannot replay the client's initialize")]
    Replay,
    #[error("{0} did not answer initialize after the token was set")]
    NoAnswer(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub struct Deferred {
    service: Arc<Service>,
    routes: Weak<Routes>,
    session: InboxRef,
    caller: Arc<Caller>,
    me: Weak<Deferred>,
    real: OnceLock<Route>,
    init: Mutex<Option<Message>>,
    waiting: Mutex<Option<oneshot::Sender<Message>>>,
    activating: tokio::sync::Mutex<()>,
    /// The session ended: a backend started late must not outlive it.
    closed: std::sync::atomic::AtomicBool,
}

impl Deferred {
    pub fn new(
        service: &Arc<Service>,
        routes: &Arc<Routes>,
        session: InboxRef,
        caller: Arc<Caller>,
    ) -> Arc<Deferred> {
        Arc::new_cyclic(|me| Deferred {
            service: service.clone(),
            routes: Arc::downgrade(routes),
            session,
            caller,
            me: me.clone(),
            real: OnceLock::new(),
            init: Mutex::new(None),
            waiting: Mutex::new(None),
            activating: tokio::sync::Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn real(&self) -> Option<&Route> {
        self.real.get()
    }

    fn answer(&self, msg: Message) {
        if let Some(inbox) = self.session.upgrade() {
            inbox.deliver(msg, None);
        }
    }

    fn message(&self) -> String {
        format!(
            "Your token for {} is not set, so this service cannot be used yet. Open {} to set it; this connection picks it up at once.",
            self.service.display_name,
            self.caller
                .setup_url()
                .unwrap_or_else(|| "/my/tokens".into())
        )
    }

    pub async fn send(&self, msg: Message) -> Result<(), BackendError> {
        if let Some(real) = self.real.get() {
            return Box::pin(real.send(msg)).await;
        }
        let Kind::Request { id, method } = &msg.kind else {
            return Ok(());
        };
        let result = match &**method {
            "initialize" => {
                let version = msg
                    .initialize_version()
                    .filter(|v| crate::jsonrpc::SUPPORTED_VERSIONS.contains(&v.as_str()))
                    .unwrap_or_else(|| crate::jsonrpc::SUPPORTED_VERSIONS[0].to_string());
                if let Ok(mut init) = self.init.lock() {
                    *init = Some(msg.clone());
                }
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": true}},
                    "serverInfo": {"name": format!("{} (token needed)", self.service.name), "version": env!("CARGO_PKG_VERSION")},
                    "instructions": self.message(),
                })
            }
            "ping" => json!({}),
            "tools/list" => json!({"tools": [{
                "name": "token_required",
                "description": self.message(),
                "inputSchema": {"type": "object", "properties": {}},
            }]}),
            "tools/call" => json!({
                "content": [{"type": "text", "text": self.message()}],
                "isError": true,
            }),
            "resources/list" => json!({"resources": []}),
            "resources/templates/list" => json!({"resourceTemplates": []}),
            "prompts/list" => json!({"prompts": []}),
            _ => {
                self.answer(jsonrpc::error_response(
                    Some(id),
                    code::TOKEN_REQUIRED,
                    &self.message(),
                    None,
                ));
                return Ok(());
            }
        };
        self.answer(jsonrpc::result_response(id, &result));
        Ok(())
    }

    /// The person's token is now set: start the real backend, replay the
    /// handshake, and tell the client its tools changed.
    pub async fn activate(&self, token: PersonalToken) -> Result<(), DeferredError> {
        use std::sync::atomic::Ordering;
        let _guard = self.activating.lock().await;
        if self.real.get().is_some() || self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(routes) = self.routes.upgrade() else {
            return Ok(());
        };
        let me: InboxRef = self.me.clone() as Weak<dyn Inbox>;
        let real = routes
            .own(&self.service, Some(&self.caller), Some(&token), me)
            .await
            .map_err(|e| DeferredError::Start(e.to_string()))?;
        // On any failure the new backend is closed, never left running.
        if let Err(e) = self.handshake(&real).await {
            real.close().await;
            return Err(e);
        }
        if self.closed.load(Ordering::Acquire) {
            real.close().await;
            return Ok(());
        }
        let _ = self.real.set(real);
        tracing::info!(service = %self.service.name, "token set: the backend started for a waiting session");
        self.answer(jsonrpc::notification(
            "notifications/tools/list_changed",
            json!({}),
        ));
        Ok(())
    }

    /// Replay the client's `initialize` (and `initialized`) to the new backend.
    async fn handshake(&self, real: &Route) -> Result<(), DeferredError> {
        let Some(init) = self.init.lock().ok().and_then(|i| i.clone()) else {
            return Ok(());
        };
        let replay = jsonrpc::with_id(&init, &jsonrpc::string_id("mcpgate-setup-initialize"))
            .ok_or(DeferredError::Replay)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            *w = Some(tx);
        }
        Box::pin(real.send(replay)).await?;
        match tokio::time::timeout(self.service.limits.startup_timeout, rx).await {
            Ok(Ok(answer)) if !answer.raw.windows(8).any(|w| w == b"\"error\":") => {}
            _ => {
                return Err(DeferredError::NoAnswer(self.service.name.to_string()));
            }
        }
        Box::pin(real.send(jsonrpc::notification(
            "notifications/initialized",
            json!({}),
        )))
        .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        // An activation in progress finishes first, so its backend is seen here.
        let _guard = self.activating.lock().await;
        if let Some(real) = self.real.get() {
            Box::pin(real.close()).await;
        }
    }
}

impl Inbox for Deferred {
    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        if let Kind::Response { id: Some(id) } = &msg.kind
            && id.as_json() == SETUP_INIT_ID
        {
            if let Some(tx) = self.waiting.lock().ok().and_then(|mut w| w.take()) {
                let _ = tx.send(msg);
            }
            return;
        }
        if let Some(inbox) = self.session.upgrade() {
            inbox.deliver(msg, related);
        }
    }

    fn backend_closed(&self, reason: String) {
        if let Some(inbox) = self.session.upgrade() {
            inbox.backend_closed(reason);
        }
    }
}
