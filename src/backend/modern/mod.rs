//! A remote server that speaks MCP 2026-07-28 (stateless), with the face of a
//! session-era backend towards the gateway's session, so every route (direct,
//! shared, aggregated, governed) and both client eras work with it unchanged.
//!
//! - `initialize` is answered here, from the server's `server/discover`; the
//!   client's capabilities and identity are kept and sent with every request
//!   (`_meta`), as 2026-07-28 wants.
//! - Each request is one POST with the 2026-07-28 headers; progress and logs
//!   on its stream reach the client's request.
//! - An `input_required` result becomes server-to-client requests (elicitation,
//!   sampling, roots) on the client's stream; the answers go back to the
//!   server in a retry with `inputResponses` and the `requestState` as given.
//! - `ping`, `logging/setLevel` and `resources/(un)subscribe` are answered
//!   here; a client's GET stream becomes `subscriptions/listen`.
//! - A client's `notifications/cancelled` closes the request's stream (that is
//!   how 2026-07-28 cancels on HTTP).

mod listen;
pub mod probe;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{BackendError, InboxRef, body_excerpt, header_map};
use crate::config::ServiceName;
use crate::jsonrpc::{self, Kind, Message, RequestId, SUPPORTED_VERSIONS, code};
use crate::service::Service;

pub use crate::wire2026::VERSION;
/// Rounds of `input_required` one request may take (the SDKs stop at 10 too).
const MAX_ROUNDS: usize = 10;

pub struct ModernBackend {
    inner: Arc<Inner>,
}

struct Inner {
    service: ServiceName,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    inbox: InboxRef,
    cancel: CancellationToken,
    /// The server's `server/discover` result.
    discover: Value,
    request_timeout: Duration,
    /// Set by the client's `initialize`.
    capabilities: RwLock<Value>,
    client_info: RwLock<Option<Value>>,
    log_level: RwLock<Option<String>>,
    subscriptions: Mutex<BTreeSet<String>>,
    /// Requests the client was asked on the server's behalf, by the id it was
    /// given, waiting for the client's answer.
    asked: Mutex<HashMap<RequestId, oneshot::Sender<Message>>>,
    /// Requests in flight, by the client's id (cancelling closes the stream).
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    listening: AtomicBool,
    listen: Mutex<Option<CancellationToken>>,
    next: AtomicU64,
    /// Which tool arguments go in `Mcp-Param-*` headers (from tools/list).
    param_headers: crate::wire2026::ParamHeaders,
}

impl ModernBackend {
    pub fn new(
        service: &Arc<Service>,
        url: Url,
        headers: &std::collections::BTreeMap<String, String>,
        discover: Value,
        inbox: InboxRef,
    ) -> Result<ModernBackend, BackendError> {
        Ok(ModernBackend {
            inner: Arc::new(Inner {
                service: service.name.clone(),
                client: service.http.clone(),
                url,
                headers: header_map(headers)?,
                inbox,
                cancel: CancellationToken::new(),
                discover,
                request_timeout: service.limits.request_timeout,
                capabilities: RwLock::new(json!({})),
                client_info: RwLock::new(None),
                log_level: RwLock::new(None),
                subscriptions: Mutex::new(BTreeSet::new()),
                asked: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                listening: AtomicBool::new(false),
                listen: Mutex::new(None),
                next: AtomicU64::new(0),
                param_headers: Default::default(),
            }),
        })
    }

    pub async fn send(&self, msg: Message) {
        let inner = &self.inner;
        match &msg.kind {
            Kind::Request { id, method } => {
                let id = id.clone();
                match &**method {
                    "initialize" => {
                        let result = inner.initialize(&msg);
                        inner.answer(&id, result);
                    }
                    "ping" => inner.answer(&id, json!({})),
                    "logging/setLevel" => {
                        let level = params_of(&msg)
                            .get("level")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        if let Ok(mut l) = inner.log_level.write() {
                            *l = level;
                        }
                        inner.answer(&id, json!({}));
                    }
                    "resources/subscribe" | "resources/unsubscribe" => {
                        let uri = params_of(&msg)
                            .get("uri")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_default();
                        {
                            let mut subs = lock(&inner.subscriptions);
                            if &**method == "resources/subscribe" {
                                subs.insert(uri);
                            } else {
                                subs.remove(&uri);
                            }
                        }
                        inner.answer(&id, json!({}));
                        // The listen stream names the resources: open it anew.
                        if inner.listening.load(Ordering::Acquire) {
                            inner.clone().relisten();
                        }
                    }
                    _ => {
                        let token = inner.cancel.child_token();
                        lock(&inner.inflight).insert(id.clone(), token.clone());
                        let inner = inner.clone();
                        // A request's answer may take minutes: never hold up the caller.
                        tokio::spawn(async move {
                            tokio::select! {
                                () = inner.clone().call(msg) => {},
                                () = token.cancelled() => {},
                            }
                            lock(&inner.inflight).remove(&id);
                        });
                    }
                }
            }
            Kind::Notification { method } => {
                if &**method == "notifications/cancelled"
                    && let Some(id) = params_of(&msg)
                        .get("requestId")
                        .and_then(jsonrpc::id_from_value)
                    && let Some(t) = lock(&inner.inflight).remove(&id)
                {
                    t.cancel();
                }
                // Other client notifications (initialized, roots changed) have
                // no 2026-07-28 counterpart.
            }
            Kind::Response { id: Some(id) } => {
                if let Some(waiter) = lock(&inner.asked).remove(id) {
                    let _ = waiter.send(msg);
                }
            }
            Kind::Response { id: None } => {}
        }
    }

    /// The client opened its GET stream: listen for the server's notifications.
    pub fn client_listens(&self) {
        if !self.inner.listening.swap(true, Ordering::AcqRel) {
            self.inner.clone().relisten();
        }
    }

    pub async fn close(&self) {
        self.inner.cancel.cancel();
    }
}

impl Inner {
    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        if let Some(inbox) = self.inbox.upgrade() {
            inbox.deliver(msg, related);
        }
    }

    fn answer(&self, id: &RequestId, result: Value) {
        self.deliver(jsonrpc::result_response(id, &result), Some(id.clone()));
    }

    fn fail(&self, id: &RequestId, code: i64, message: String) {
        self.deliver(
            jsonrpc::error_response(Some(id), code, &message, None),
            Some(id.clone()),
        );
    }

    /// The session-era `initialize` answer, from `server/discover`.
    fn initialize(&self, msg: &Message) -> Value {
        let params = params_of(msg);
        if let Ok(mut c) = self.capabilities.write() {
            *c = params
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({}));
        }
        if let Ok(mut c) = self.client_info.write() {
            *c = params.get("clientInfo").cloned();
        }
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if SUPPORTED_VERSIONS.contains(&asked) {
            asked
        } else {
            SUPPORTED_VERSIONS[0]
        };
        let d = &self.discover;
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": d.pointer("/_meta/io.modelcontextprotocol~1serverInfo").cloned()
                .unwrap_or_else(|| json!({"name": self.service.as_str(), "version": "unknown"})),
        });
        if let Some(i) = d.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = i.clone();
        }
        result
    }

    /// `_meta` of every request: who the client is and what it can do.
    fn meta(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "io.modelcontextprotocol/protocolVersion".into(),
            json!(VERSION),
        );
        let caps = self
            .capabilities
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        m.insert("io.modelcontextprotocol/clientCapabilities".into(), caps);
        if let Some(info) = self.client_info.read().ok().and_then(|c| c.clone()) {
            m.insert("io.modelcontextprotocol/clientInfo".into(), info);
        }
        if let Some(level) = self.log_level.read().ok().and_then(|l| l.clone()) {
            m.insert("io.modelcontextprotocol/logLevel".into(), json!(level));
        }
        m
    }

    /// One POST with the 2026-07-28 headers.
    fn post(
        &self,
        method: &str,
        params: &Map<String, Value>,
        id: Option<&RequestId>,
    ) -> reqwest::RequestBuilder {
        let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if let Some(id) = id {
            body["id"] = jsonrpc::id_value(id);
        }
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", VERSION)
            .header("mcp-method", method);
        if let Some(name) = crate::wire2026::name_of(method, params)
            && let Ok(v) = HeaderValue::from_str(&crate::wire2026::header_text(name))
        {
            req = req.header("mcp-name", v);
        }
        for (k, v) in self.param_headers.for_request(method, params) {
            req = req.header(k, v);
        }
        req.body(body.to_string())
    }

    /// Carry out one client request, round after round.
    async fn call(self: Arc<Self>, msg: Message) {
        let Kind::Request { id, method } = &msg.kind else {
            return;
        };
        let mut params = params_of(&msg);
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.extend(self.meta());
        params.insert("_meta".into(), Value::Object(meta));
        for round in 0..MAX_ROUNDS {
            // A retry is a new request: a new id (the answer goes back under the client's).
            let wire_id = if round == 0 {
                id.clone()
            } else {
                jsonrpc::string_id(&format!(
                    "mcpgate-retry-{}",
                    self.next.fetch_add(1, Ordering::Relaxed)
                ))
            };
            let Some(answer) = self.exchange(method, &params, &wire_id, id).await else {
                return;
            };
            let mut v: Value = match serde_json::from_slice(&answer.raw) {
                Ok(v) => v,
                Err(_) => return self.deliver(answer, Some(id.clone())),
            };
            let input_required =
                v.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required");
            if !input_required {
                if &**method == "tools/list"
                    && let Some(r) = v.get_mut("result").and_then(Value::as_object_mut)
                {
                    self.param_headers.learn(r);
                }
                session_era(&mut v, method);
                v["id"] = jsonrpc::id_value(id);
                if let Some(m) = jsonrpc::from_value(&v) {
                    self.deliver(m, Some(id.clone()));
                }
                return;
            }
            let result = v.get("result").cloned().unwrap_or_default();
            let Some(responses) = self.ask_client(id, &result).await else {
                return;
            };
            params.insert("inputResponses".into(), Value::Object(responses));
            match result.get("requestState") {
                Some(s) => params.insert("requestState".into(), s.clone()),
                None => params.remove("requestState"),
            };
        }
        self.fail(
            id,
            code::BACKEND_UNAVAILABLE,
            format!(
                "service {:?} asked for input more than {MAX_ROUNDS} times for one request",
                self.service.as_str()
            ),
        );
    }

    /// POST one round; notifications on its stream go to the client's request.
    /// The final answer, or `None` when the failure was already reported.
    async fn exchange(
        &self,
        method: &str,
        params: &Map<String, Value>,
        wire_id: &RequestId,
        id: &RequestId,
    ) -> Option<Message> {
        let resp = match self.post(method, params, Some(wire_id)).send().await {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    id,
                    code::BACKEND_UNAVAILABLE,
                    format!(
                        "service {:?} is unreachable: {}",
                        self.service.as_str(),
                        super::streamable::error_chain(&e)
                    ),
                );
                return None;
            }
        };
        let status = resp.status();
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        if sse {
            let mut events = resp.bytes_stream().eventsource();
            while let Some(Ok(ev)) = events.next().await {
                if ev.data.trim().is_empty() {
                    continue;
                }
                let Ok(m) = Message::parse(bytes::Bytes::from(ev.data)) else {
                    continue;
                };
                match &m.kind {
                    Kind::Response { id: Some(r) } if r == wire_id => return Some(m),
                    Kind::Notification { .. } => self.deliver(m, Some(id.clone())),
                    _ => {}
                }
            }
            self.fail(
                id,
                code::BACKEND_UNAVAILABLE,
                format!(
                    "service {:?} closed the stream before answering",
                    self.service.as_str()
                ),
            );
            return None;
        }
        let body = resp.bytes().await.unwrap_or_default();
        match Message::parse(body.clone()) {
            // A JSON-RPC answer, whatever the status (2026-07-28 errors are HTTP 400).
            Ok(m) if matches!(m.kind, Kind::Response { .. }) => Some(m),
            _ => {
                self.fail(
                    id,
                    code::BACKEND_UNAVAILABLE,
                    format!(
                        "service {:?} answered HTTP {}{}",
                        self.service.as_str(),
                        status.as_u16(),
                        body_excerpt(&body)
                    ),
                );
                None
            }
        }
    }

    /// Ask the client each input request, as a server-to-client request on
    /// the request's stream; their answers by key, or `None` if the call ended.
    async fn ask_client(&self, id: &RequestId, result: &Value) -> Option<Map<String, Value>> {
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut waiting = Vec::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            // The server's key as the request's id, so a client that is
            // itself 2026-07-28 (through `stateless`) sees the same key.
            let asked = {
                let by_key = jsonrpc::string_id(&key);
                if lock(&self.asked).contains_key(&by_key) {
                    jsonrpc::string_id(&format!(
                        "mcpgate-input-{}",
                        self.next.fetch_add(1, Ordering::Relaxed)
                    ))
                } else {
                    by_key
                }
            };
            let mut out =
                json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&asked), "method": method});
            if let Some(p) = request.get("params") {
                out["params"] = p.clone();
            }
            let Some(m) = jsonrpc::from_value(&out) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            lock(&self.asked).insert(asked.clone(), tx);
            self.deliver(m, Some(id.clone()));
            waiting.push((key, asked, rx));
        }
        let mut answers = Map::new();
        for (key, asked, rx) in waiting {
            let answer = tokio::time::timeout(self.request_timeout, rx).await;
            lock(&self.asked).remove(&asked);
            let Ok(Ok(answer)) = answer else {
                return None; // timed out or the session ended: the session reports it
            };
            let v: Value = serde_json::from_slice(&answer.raw).unwrap_or_default();
            match (v.get("result"), v.get("error")) {
                (Some(r), _) => {
                    answers.insert(key, r.clone());
                }
                (_, Some(e)) => {
                    let message = e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("refused");
                    self.fail(
                        id,
                        code::INVALID_REQUEST,
                        format!(
                            "the client did not answer the server's {key:?} request: {message}"
                        ),
                    );
                    return None;
                }
                _ => return None,
            }
        }
        Some(answers)
    }

    /// (Re)open the listen stream.
    fn relisten(self: Arc<Self>) {
        let token = self.cancel.child_token();
        if let Some(old) = lock(&self.listen).replace(token.clone()) {
            old.cancel();
        }
        tokio::spawn(async move { listen::run(self, token).await });
    }
}

/// Reshape a 2026-07-28 answer for a session-era client: no `resultType`, and
/// the session era's code for a resource that is not there.
fn session_era(v: &mut Value, method: &str) {
    if let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) {
        r.remove("resultType");
    }
    if method == "resources/read"
        && let Some(e) = v.get_mut("error").and_then(Value::as_object_mut)
        && e.get("code").and_then(Value::as_i64) == Some(code::INVALID_PARAMS)
        && e.get("data").and_then(|d| d.get("uri")).is_some()
    {
        e.insert("code".into(), json!(code::RESOURCE_NOT_FOUND));
    }
}

fn params_of(msg: &Message) -> Map<String, Value> {
    #[derive(serde::Deserialize)]
    struct P {
        params: Option<Map<String, Value>>,
    }
    serde_json::from_slice::<P>(&msg.raw)
        .ok()
        .and_then(|p| p.params)
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
