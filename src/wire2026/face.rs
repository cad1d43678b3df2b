//! The session-era face a 2026-07-28 server is given, for a session-era
//! client: what both the gateway (`backend::modern`) and the stdio bridge
//! (`connect`) keep and decide, apart from how they send and deliver.
//!
//! It remembers the client's `initialize` (capabilities, identity) and sends
//! them with every request (`_meta`), answers what 2026-07-28 removed
//! (`initialize` itself, `ping`, `logging/setLevel`, resource subscriptions),
//! turns an `input_required` answer into requests for the client and waits
//! for their answers, and tracks requests in flight for cancellation.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{
    META_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_SERVER_INFO, META_SUBSCRIPTION_ID,
    META_VERSION, ParamHeaders, VERSION,
};
use crate::jsonrpc::{self, Message, RequestId, SUPPORTED_VERSIONS, code};

/// Rounds of `input_required` one request may take (the SDKs stop at 10 too).
pub const MAX_ROUNDS: usize = 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Face {
    discover: Value,
    capabilities: RwLock<Value>,
    client_info: RwLock<Option<Value>>,
    log_level: RwLock<Option<String>>,
    subscriptions: Mutex<BTreeSet<String>>,
    /// Which tool arguments go in `Mcp-Param-*` headers (from tools/list).
    pub param_headers: ParamHeaders,
    /// Questions of the server put to the client, by the id they were given.
    asked: Mutex<HashMap<RequestId, oneshot::Sender<Message>>>,
    /// Requests in flight, by the client's id (cancelling closes the stream).
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    next: AtomicU64,
}

/// What a client message comes to, when the face deals with it itself.
pub enum Local {
    /// Answer the request with this result.
    Answer(Value),
    /// Answer with `{}`, and reopen the listen stream (subscriptions changed).
    Resubscribed,
    /// A notification dealt with (or without a 2026-07-28 counterpart).
    Done,
    /// The client's `initialized`: open the listen stream.
    Listen,
}

/// Why the client's answers to the server's questions are not all there.
pub enum Unanswered {
    /// The client refused one (its error message).
    Refused(String),
    /// It took too long, or went away.
    Gone,
}

impl Face {
    pub fn new(discover: Value) -> Face {
        Face {
            discover,
            capabilities: RwLock::new(json!({})),
            client_info: RwLock::new(None),
            log_level: RwLock::new(None),
            subscriptions: Mutex::new(BTreeSet::new()),
            param_headers: ParamHeaders::default(),
            asked: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// The client's `initialize`: remember what it declares; the session-era
    /// answer, from `server/discover` (`unnamed`: the server's name if
    /// discover gives none).
    pub fn initialize(&self, params: &Map<String, Value>, unnamed: &str) -> Value {
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
        let info_pointer = format!("/_meta/{}", META_SERVER_INFO.replace('/', "~1"));
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": d.pointer(&info_pointer).cloned()
                .unwrap_or_else(|| json!({"name": unnamed, "version": "unknown"})),
        });
        if let Some(i) = d.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = i.clone();
        }
        result
    }

    /// What the face answers or does itself; `None`: send it to the server.
    pub fn local(&self, msg: &Message, unnamed: &str) -> Option<Local> {
        let params = msg.params_object();
        let method = msg.method()?;
        match method {
            "initialize" => Some(Local::Answer(self.initialize(&params, unnamed))),
            "ping" => Some(Local::Answer(json!({}))),
            "logging/setLevel" => {
                if let Ok(mut l) = self.log_level.write() {
                    *l = params
                        .get("level")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                Some(Local::Answer(json!({})))
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let mut subs = lock(&self.subscriptions);
                if method == "resources/subscribe" {
                    subs.insert(uri);
                } else {
                    subs.remove(&uri);
                }
                Some(Local::Resubscribed)
            }
            "notifications/initialized" => Some(Local::Listen),
            "notifications/cancelled" => {
                if let Some(id) = params.get("requestId").and_then(jsonrpc::id_from_value)
                    && let Some(t) = lock(&self.inflight).remove(&id)
                {
                    t.cancel();
                }
                Some(Local::Done)
            }
            _ if !msg.is_request() => Some(Local::Done),
            _ => None,
        }
    }

    /// A client's answer to a question of the server: to the waiting call.
    pub fn answered(&self, id: &RequestId, msg: &Message) {
        if let Some(w) = lock(&self.asked).remove(id) {
            let _ = w.send(msg.clone());
        }
    }

    /// A request now in flight; cancelled with `notifications/cancelled` or
    /// when `parent` is.
    pub fn track(&self, id: &RequestId, parent: &CancellationToken) -> CancellationToken {
        let token = parent.child_token();
        lock(&self.inflight).insert(id.clone(), token.clone());
        token
    }

    pub fn untrack(&self, id: &RequestId) {
        lock(&self.inflight).remove(id);
    }

    /// `_meta` of every request: who the client is and what it can do.
    pub fn meta(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(META_VERSION.into(), json!(VERSION));
        let caps = self
            .capabilities
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        m.insert(META_CAPABILITIES.into(), caps);
        if let Some(info) = self.client_info.read().ok().and_then(|c| c.clone()) {
            m.insert(META_CLIENT_INFO.into(), info);
        }
        if let Some(level) = self.log_level.read().ok().and_then(|l| l.clone()) {
            m.insert(META_LOG_LEVEL.into(), json!(level));
        }
        m
    }

    /// A client request's params for the server: its own `_meta`, then ours.
    pub fn request_params(&self, msg: &Message) -> Map<String, Value> {
        let mut params = msg.params_object();
        let mut meta = match params.remove("_meta") {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        meta.extend(self.meta());
        params.insert("_meta".into(), Value::Object(meta));
        params
    }

    /// The params of `subscriptions/listen`: every list change, and the
    /// resources the client subscribed to.
    pub fn listen_params(&self) -> Map<String, Value> {
        let uris: Vec<String> = lock(&self.subscriptions).iter().cloned().collect();
        let mut params = Map::new();
        params.insert("_meta".into(), Value::Object(self.meta()));
        params.insert(
            "notifications".into(),
            json!({"toolsListChanged": true, "promptsListChanged": true,
                   "resourcesListChanged": true, "resourceSubscriptions": uris}),
        );
        params
    }

    /// A new id for a retry (a retry is a new request).
    pub fn retry_id(&self) -> RequestId {
        jsonrpc::string_id(&format!(
            "mcpgate-retry-{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The requests an `input_required` result names, as messages for the
    /// client: each under the server's key as its id when that is free (a
    /// client that is itself 2026-07-28, through the gateway's bridge, sees
    /// the same key), with the receiver of its answer.
    pub fn questions(&self, result: &Value) -> Vec<(String, Message, oneshot::Receiver<Message>)> {
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for (key, request) in requests {
            let (tx, rx) = oneshot::channel();
            let id = {
                let mut asked = lock(&self.asked);
                let by_key = jsonrpc::string_id(&key);
                let id = if asked.contains_key(&by_key) {
                    jsonrpc::string_id(&format!(
                        "mcpgate-input-{}",
                        self.next.fetch_add(1, Ordering::Relaxed)
                    ))
                } else {
                    by_key
                };
                asked.insert(id.clone(), tx);
                id
            };
            let mut m = json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&id),
                "method": request.get("method").cloned().unwrap_or(Value::Null)});
            if let Some(p) = request.get("params") {
                m["params"] = p.clone();
            }
            match jsonrpc::from_value(&m) {
                Some(m) => out.push((key, m, rx)),
                None => {
                    lock(&self.asked).remove(&id);
                }
            }
        }
        out
    }

    /// Wait for the client's answers to `questions`, by key.
    pub async fn answers(
        &self,
        questions: Vec<(String, RequestId, oneshot::Receiver<Message>)>,
        timeout: Duration,
    ) -> Result<Map<String, Value>, Unanswered> {
        let mut answers = Map::new();
        for (key, id, rx) in questions {
            let got = tokio::time::timeout(timeout, rx).await;
            lock(&self.asked).remove(&id);
            let Ok(Ok(answer)) = got else {
                return Err(Unanswered::Gone);
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
                    return Err(Unanswered::Refused(format!(
                        "the client did not answer the server's {key:?} request: {message}"
                    )));
                }
                _ => return Err(Unanswered::Gone),
            }
        }
        Ok(answers)
    }
}

/// Whether an answer is `input_required`.
pub fn input_required(v: &Value) -> bool {
    v.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required")
}

/// Reshape a 2026-07-28 answer for a session-era client: no `resultType`, and
/// the session era's code for a resource that is not there.
pub fn session_era(v: &mut Value, method: &str) {
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

/// One event of a listen stream, for a session-era client: `None` for the
/// acknowledgement and what is not a notification; the subscription id,
/// which means nothing to such a client, removed.
pub fn listened(data: &str) -> Option<Message> {
    let mut v: Value = serde_json::from_str(data).ok()?;
    let method = v.get("method").and_then(Value::as_str)?;
    if method == "notifications/subscriptions/acknowledged" || v.get("id").is_some() {
        return None;
    }
    if let Some(meta) = v
        .pointer_mut("/params/_meta")
        .and_then(Value::as_object_mut)
    {
        meta.remove(META_SUBSCRIPTION_ID);
    }
    jsonrpc::from_value(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(v: Value) -> Message {
        jsonrpc::from_value(&v).expect("message")
    }

    #[test]
    fn initialize_is_answered_from_discover_and_remembered_for_meta() {
        let face = Face::new(
            json!({"supportedVersions": [VERSION], "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}}}),
        );
        let init = msg(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "c", "version": "0"}}}),
        );
        let Some(Local::Answer(r)) = face.local(&init, "fallback") else {
            panic!("answered locally");
        };
        assert_eq!(r["protocolVersion"], "2025-06-18");
        assert_eq!(r["serverInfo"]["name"], "s");
        assert_eq!(r["capabilities"], json!({"tools": {}}));
        let level = msg(
            json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}),
        );
        assert!(matches!(face.local(&level, "x"), Some(Local::Answer(_))));
        let call = msg(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "t", "_meta": {"progressToken": 7}}}),
        );
        assert!(face.local(&call, "x").is_none());
        let p = face.request_params(&call);
        assert_eq!(p["_meta"]["progressToken"], 7);
        assert_eq!(p["_meta"][META_CAPABILITIES], json!({"elicitation": {}}));
        assert_eq!(p["_meta"][META_LOG_LEVEL], "debug");
        assert_eq!(p["_meta"][META_CLIENT_INFO]["name"], "c");
    }

    #[tokio::test]
    async fn questions_go_out_under_the_server_keys_and_answers_come_back_by_key() {
        let face = Face::new(json!({}));
        let result = json!({"resultType": "input_required", "inputRequests": {
            "user_name": {"method": "elicitation/create", "params": {"message": "name?"}}}});
        let qs = face.questions(&result);
        assert_eq!(qs.len(), 1);
        let (key, m, rx) = qs.into_iter().next().expect("one");
        assert_eq!(m.method(), Some("elicitation/create"));
        let id = m.request_id().expect("a request").clone();
        assert_eq!(jsonrpc::id_value(&id), json!("user_name"));
        let reply =
            msg(json!({"jsonrpc": "2.0", "id": "user_name", "result": {"action": "accept"}}));
        face.answered(&id, &reply);
        let answers = face
            .answers(vec![(key, id, rx)], Duration::from_secs(1))
            .await
            .ok()
            .expect("answered");
        assert_eq!(answers["user_name"]["action"], "accept");
    }

    #[test]
    fn session_era_shape_and_listened_events() {
        let mut v =
            json!({"id": 1, "error": {"code": -32602, "message": "no", "data": {"uri": "x://y"}}});
        session_era(&mut v, "resources/read");
        assert_eq!(v["error"]["code"], -32002);
        assert!(listened(r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}"#).is_none());
        let n = listened(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":5}}}"#)
            .expect("a notification");
        assert!(!String::from_utf8_lossy(&n.raw).contains("subscriptionId"));
    }
}
