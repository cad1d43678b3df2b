//! MCP 2026-07-28 towards the remote server, whatever the local client speaks.
//!
//! At the client's `initialize` the server is asked `server/discover` (signing
//! in if it answers 401). A server that lists 2026-07-28 is spoken to in it:
//! the local client's `initialize` is answered from the discover result, and
//! every request goes as one POST with the 2026-07-28 headers (`Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*` for arguments a tool marks `x-mcp-header`) and
//! `_meta` (version, the client's capabilities and identity). An
//! `input_required` answer becomes elicitation/sampling/roots requests on
//! stdout; the client's answers go back in a retry with `inputResponses` and
//! the `requestState` unchanged. Any other answer to the probe: the session
//! era, as before.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Remote, RemoteError, challenge_of, excerpt, is_sse};
use crate::connect::trace::Traced;
use crate::jsonrpc::{self, Kind, Message, RequestId, SUPPORTED_VERSIONS, code};
use crate::wire2026::{ParamHeaders, VERSION, header_text};

/// Rounds of `input_required` one request may take.
const MAX_ROUNDS: usize = 10;
/// How long the local client may take to answer a question of the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The remote speaks 2026-07-28: what every request carries, and what waits.
pub struct Modern {
    discover: Value,
    capabilities: RwLock<Value>,
    client_info: RwLock<Option<Value>>,
    log_level: RwLock<Option<String>>,
    subscriptions: Mutex<BTreeSet<String>>,
    /// Questions of the server put to the local client, by the id they got.
    asked: Mutex<HashMap<RequestId, oneshot::Sender<Message>>>,
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    /// Which arguments of each tool go in `Mcp-Param-*` headers (from tools/list).
    header_params: ParamHeaders,
    listen: Mutex<Option<CancellationToken>>,
    next: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

impl Remote {
    /// The local client's `initialize`: if the server speaks 2026-07-28, keep
    /// the client's capabilities and answer from `server/discover`.
    pub(super) async fn try_modern(self: &Arc<Self>, init: &Message) -> Result<bool, RemoteError> {
        let probe = json!({"jsonrpc": "2.0", "id": "mcpgate-discover", "method": "server/discover",
            "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "mcpgate-connect", "version": env!("CARGO_PKG_VERSION")}}}});
        let mut discover = None;
        // Twice at most: a server may refuse the first request with -32022
        // naming 2026-07-28 among what it supports (then it is worth asking again).
        for _ in 0..2 {
            let resp = self
                .modern_post(Bytes::from(probe.to_string()), "server/discover", None, &[])
                .await?;
            let Some(resp) = resp else {
                return Ok(false);
            };
            let answer = read_final(resp, None)
                .await
                .and_then(|a| serde_json::from_slice::<Value>(&a.raw).ok())
                .unwrap_or_default();
            let retry = answer.pointer("/error/code").and_then(Value::as_i64)
                == Some(code::UNSUPPORTED_VERSION)
                && answer
                    .pointer("/error/data/supported")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|x| x == VERSION));
            discover = answer.get("result").cloned().filter(|r| {
                r.get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|x| x == VERSION))
            });
            if !retry {
                break;
            }
        }
        let Some(discover) = discover else {
            return Ok(false);
        };
        let params = params_of(init);
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if SUPPORTED_VERSIONS.contains(&asked) {
            asked
        } else {
            SUPPORTED_VERSIONS[0]
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": discover.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": discover.pointer("/_meta/io.modelcontextprotocol~1serverInfo").cloned()
                .unwrap_or_else(|| json!({"name": self.url.as_str(), "version": "unknown"})),
        });
        if let Some(i) = discover.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = i.clone();
        }
        let modern = Arc::new(Modern {
            discover,
            capabilities: RwLock::new(
                params
                    .get("capabilities")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            ),
            client_info: RwLock::new(params.get("clientInfo").cloned()),
            log_level: RwLock::new(None),
            subscriptions: Mutex::new(BTreeSet::new()),
            asked: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            header_params: ParamHeaders::default(),
            listen: Mutex::new(None),
            next: AtomicU64::new(0),
        });
        let _ = self.modern.set(modern);
        eprintln!(
            "mcpgate connect: {} speaks MCP {VERSION}; bridging the local client to it",
            self.url
        );
        if let Some(id) = init.request_id() {
            self.emit(&jsonrpc::result_response(id, &result).raw);
        }
        Ok(true)
    }

    /// One message of the local client, the server being 2026-07-28.
    pub(super) async fn modern_deliver(
        self: &Arc<Self>,
        m: &Arc<Modern>,
        msg: &Message,
    ) -> Result<(), RemoteError> {
        match &msg.kind {
            Kind::Request { id, method } => match &**method {
                "initialize" => {
                    let result = json!({"protocolVersion": SUPPORTED_VERSIONS[0],
                        "capabilities": m.discover.get("capabilities").cloned().unwrap_or_else(|| json!({}))});
                    self.emit(&jsonrpc::result_response(id, &result).raw);
                }
                "ping" => self.emit(&jsonrpc::result_response(id, &json!({})).raw),
                "logging/setLevel" => {
                    if let Ok(mut l) = m.log_level.write() {
                        *l = params_of(msg)
                            .get("level")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                    }
                    self.emit(&jsonrpc::result_response(id, &json!({})).raw);
                }
                "resources/subscribe" | "resources/unsubscribe" => {
                    let uri = params_of(msg)
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    {
                        let mut subs = lock(&m.subscriptions);
                        if &**method == "resources/subscribe" {
                            subs.insert(uri);
                        } else {
                            subs.remove(&uri);
                        }
                    }
                    self.emit(&jsonrpc::result_response(id, &json!({})).raw);
                    self.listen(m);
                }
                _ => {
                    let token = self.shutdown.child_token();
                    lock(&m.inflight).insert(id.clone(), token.clone());
                    let outcome = tokio::select! {
                        r = self.modern_call(m, msg) => r,
                        () = token.cancelled() => Ok(()),
                    };
                    lock(&m.inflight).remove(id);
                    return outcome;
                }
            },
            Kind::Notification { method } => match &**method {
                "notifications/initialized" => self.listen(m),
                "notifications/cancelled" => {
                    if let Some(id) = params_of(msg)
                        .get("requestId")
                        .and_then(jsonrpc::id_from_value)
                        && let Some(t) = lock(&m.inflight).remove(&id)
                    {
                        t.cancel();
                    }
                }
                _ => {}
            },
            Kind::Response { id: Some(id) } => {
                if let Some(w) = lock(&m.asked).remove(id) {
                    let _ = w.send(msg.clone());
                }
            }
            Kind::Response { id: None } => {}
        }
        Ok(())
    }

    fn meta(&self, m: &Modern) -> Map<String, Value> {
        let mut meta = Map::new();
        meta.insert(
            "io.modelcontextprotocol/protocolVersion".into(),
            json!(VERSION),
        );
        let caps = m.capabilities.read().map(|c| c.clone()).unwrap_or_default();
        meta.insert("io.modelcontextprotocol/clientCapabilities".into(), caps);
        if let Some(info) = m.client_info.read().ok().and_then(|c| c.clone()) {
            meta.insert("io.modelcontextprotocol/clientInfo".into(), info);
        }
        if let Some(level) = m.log_level.read().ok().and_then(|l| l.clone()) {
            meta.insert("io.modelcontextprotocol/logLevel".into(), json!(level));
        }
        meta
    }

    /// One request, round after round.
    async fn modern_call(
        self: &Arc<Self>,
        m: &Arc<Modern>,
        msg: &Message,
    ) -> Result<(), RemoteError> {
        let Kind::Request { id, method } = &msg.kind else {
            return Ok(());
        };
        let mut params = params_of(msg);
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        meta.extend(self.meta(m));
        params.insert("_meta".into(), Value::Object(meta));
        let name = match &**method {
            "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
            "resources/read" => params.get("uri").and_then(Value::as_str),
            _ => None,
        }
        .map(str::to_string);
        let extra = m.header_params.for_request(method, &params);
        for round in 0..MAX_ROUNDS {
            // A retry is a new request: a new id (the answer goes back under the client's).
            let wire_id = if round == 0 {
                jsonrpc::id_value(id)
            } else {
                json!(format!(
                    "mcpgate-retry-{}",
                    m.next.fetch_add(1, Ordering::Relaxed)
                ))
            };
            let body = json!({"jsonrpc": "2.0", "id": wire_id, "method": method, "params": params});
            let resp = self
                .modern_post(
                    Bytes::from(body.to_string()),
                    method,
                    name.as_deref(),
                    &extra,
                )
                .await?;
            let Some(resp) = resp else {
                return Err(RemoteError::Status {
                    url: self.url.to_string(),
                    status: reqwest::StatusCode::BAD_REQUEST,
                    what: method.to_string(),
                    body: "no JSON-RPC answer".into(),
                });
            };
            let Some(answer) = read_final(resp, Some((self, id))).await else {
                return Err(RemoteError::NoResumeId {
                    url: self.url.to_string(),
                });
            };
            let mut v: Value = serde_json::from_slice(&answer.raw).unwrap_or_default();
            if v.pointer("/result/resultType").and_then(Value::as_str) != Some("input_required") {
                if let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) {
                    r.remove("resultType");
                    if &**method == "tools/list" {
                        m.header_params.learn(r);
                    }
                }
                v["id"] = jsonrpc::id_value(id);
                self.emit(v.to_string().as_bytes());
                return Ok(());
            }
            let result = v.get("result").cloned().unwrap_or_default();
            let Some(answers) = self.ask_client(m, &result).await else {
                let e = jsonrpc::error_response(
                    Some(id),
                    code::INVALID_REQUEST,
                    "the local client did not answer the server's question",
                    None,
                );
                self.emit(&e.raw);
                return Ok(());
            };
            params.insert("inputResponses".into(), Value::Object(answers));
            match result.get("requestState") {
                Some(s) => params.insert("requestState".into(), s.clone()),
                None => params.remove("requestState"),
            };
        }
        let e = jsonrpc::error_response(
            Some(id),
            code::INVALID_REQUEST,
            &format!("{} asked for input more than {MAX_ROUNDS} times", self.url),
            None,
        );
        self.emit(&e.raw);
        Ok(())
    }

    /// Put each input request to the local client; their answers by key.
    async fn ask_client(&self, m: &Modern, result: &Value) -> Option<Map<String, Value>> {
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut waiting = Vec::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            let asked = jsonrpc::string_id(&format!(
                "mcpgate-{key}-{}",
                m.next.fetch_add(1, Ordering::Relaxed)
            ));
            let mut out =
                json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&asked), "method": method});
            if let Some(p) = request.get("params") {
                out["params"] = p.clone();
            }
            let (tx, rx) = oneshot::channel();
            lock(&m.asked).insert(asked.clone(), tx);
            self.emit(out.to_string().as_bytes());
            waiting.push((key, asked, rx));
        }
        let mut answers = Map::new();
        for (key, asked, rx) in waiting {
            let got = tokio::time::timeout(ANSWER_TIMEOUT, rx).await;
            lock(&m.asked).remove(&asked);
            let v: Value = serde_json::from_slice(&got.ok()?.ok()?.raw).unwrap_or_default();
            answers.insert(key, v.get("result").cloned()?);
        }
        Some(answers)
    }

    /// POST a 2026-07-28 message, signing in on 401 (and stepping up scopes on
    /// 403 `insufficient_scope`). `None` when the answer is not JSON-RPC (a
    /// session-era server refusing, for the probe).
    async fn modern_post(
        &self,
        body: Bytes,
        method: &str,
        name: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<Option<reqwest::Response>, RemoteError> {
        let mut auth_rounds = 0;
        loop {
            let token = self.bearer().await?;
            let mut req = self
                .request(reqwest::Method::POST, &self.url, token.as_deref())
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", VERSION)
                .header("mcp-method", method);
            if let Some(n) = name {
                req = req.header("mcp-name", header_text(n));
            }
            for (k, v) in extra {
                req = req.header(k.as_str(), v.as_str());
            }
            let resp = req
                .body(body.clone())
                .traced("mcp.post")
                .await
                .map_err(|source| RemoteError::Unreachable {
                    url: self.url.to_string(),
                    what: method.to_string(),
                    source,
                })?;
            match resp.status().as_u16() {
                401 => {
                    auth_rounds += 1;
                    if auth_rounds > 2 {
                        return Err(RemoteError::StillUnauthorized {
                            url: self.url.to_string(),
                            what: method.to_string(),
                        });
                    }
                    self.unauthorized(token.as_deref(), &resp).await?;
                }
                403 => {
                    let ch = challenge_of(&resp).unwrap_or_default();
                    if ch.error.as_deref() != Some("insufficient_scope")
                        || auth_rounds >= 3
                        || self.fixed_authorization()
                    {
                        return Err(RemoteError::Forbidden {
                            url: self.url.to_string(),
                            what: method.to_string(),
                            body: excerpt(resp, token.as_deref()).await,
                        });
                    }
                    auth_rounds += 1;
                    self.auth.step_up(token.as_deref(), ch).await?;
                }
                _ => {
                    if token.is_some() && resp.status().is_success() {
                        self.auth.accepted();
                    }
                    let json = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.starts_with("application/json"));
                    return Ok((json || is_sse(&resp)).then_some(resp));
                }
            }
        }
    }

    /// (Re)open `subscriptions/listen`, for list changes and subscribed resources.
    fn listen(self: &Arc<Self>, m: &Arc<Modern>) {
        let token = self.shutdown.child_token();
        if let Some(old) = lock(&m.listen).replace(token.clone()) {
            old.cancel();
        }
        let (me, m) = (self.clone(), m.clone());
        tokio::spawn(async move {
            let mut retry = Duration::from_millis(500);
            while !token.is_cancelled() {
                let uris: Vec<String> = lock(&m.subscriptions).iter().cloned().collect();
                let body = json!({"jsonrpc": "2.0", "id": "mcpgate-listen", "method": "subscriptions/listen",
                    "params": {"_meta": me.meta(&m), "notifications": {"toolsListChanged": true,
                        "promptsListChanged": true, "resourcesListChanged": true, "resourceSubscriptions": uris}}});
                let sent = tokio::select! {
                    r = me.modern_post(Bytes::from(body.to_string()), "subscriptions/listen", None, &[]) => r,
                    () = token.cancelled() => return,
                };
                if let Ok(Some(resp)) = sent
                    && is_sse(&resp)
                {
                    let mut events = resp.bytes_stream().eventsource();
                    loop {
                        let ev = tokio::select! {
                            e = events.next() => e,
                            () = token.cancelled() => return,
                        };
                        let Some(Ok(ev)) = ev else { break };
                        let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
                            continue;
                        };
                        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
                        if method.is_empty() || method == "notifications/subscriptions/acknowledged"
                        {
                            retry = Duration::from_millis(500);
                            continue;
                        }
                        if let Some(meta) = v
                            .pointer_mut("/params/_meta")
                            .and_then(Value::as_object_mut)
                        {
                            meta.remove("io.modelcontextprotocol/subscriptionId");
                        }
                        me.emit(v.to_string().as_bytes());
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(retry) => {},
                    () = token.cancelled() => return,
                }
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        });
    }
}

/// The answer in a JSON or SSE body; notifications before it go to stdout
/// when `relay` names the request they belong to.
async fn read_final(
    resp: reqwest::Response,
    relay: Option<(&Remote, &RequestId)>,
) -> Option<Message> {
    if !is_sse(&resp) {
        let body = resp.bytes().await.ok()?;
        return Message::parse(body).ok();
    }
    let mut events = resp.bytes_stream().eventsource();
    while let Some(Ok(ev)) = events.next().await {
        if ev.data.trim().is_empty() {
            continue;
        }
        let Ok(m) = Message::parse(Bytes::from(ev.data)) else {
            continue;
        };
        match (&m.kind, relay) {
            (Kind::Response { .. }, _) => return Some(m),
            (Kind::Notification { .. }, Some((remote, _))) => remote.emit(&m.raw),
            _ => {}
        }
    }
    None
}
