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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Remote, RemoteError, is_sse};
use crate::connect::trace::Traced;
use crate::jsonrpc::{self, Kind, Message, code};
use crate::wire2026::face::{self, Face, Local, MAX_ROUNDS, Unanswered};
use crate::wire2026::{VERSION, header_text};

/// How long the local client may take to answer a question of the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The remote speaks 2026-07-28: the face it is given towards the local
/// client, and the listen stream.
pub struct Modern {
    face: Face,
    listen: Mutex<Option<CancellationToken>>,
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
        let modern = Arc::new(Modern {
            face: Face::new(discover),
            listen: Mutex::new(None),
        });
        let result = modern
            .face
            .initialize(&init.params_object(), self.url.as_str());
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
        if let Kind::Response { id: Some(id) } = &msg.kind {
            m.face.answered(id, msg);
            return Ok(());
        }
        match m.face.local(msg, self.url.as_str()) {
            Some(Local::Answer(result)) => {
                if let Some(id) = msg.request_id() {
                    self.emit(&jsonrpc::result_response(id, &result).raw);
                }
            }
            Some(Local::Resubscribed) => {
                if let Some(id) = msg.request_id() {
                    self.emit(&jsonrpc::result_response(id, &json!({})).raw);
                }
                self.listen(m);
            }
            Some(Local::Listen) => self.listen(m),
            Some(Local::Done) => {}
            None => {
                let Some(id) = msg.request_id() else {
                    return Ok(());
                };
                let token = m.face.track(id, &self.shutdown);
                let outcome = tokio::select! {
                    r = self.modern_call(m, msg) => r,
                    () = token.cancelled() => Ok(()),
                };
                m.face.untrack(id);
                return outcome;
            }
        }
        Ok(())
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
        let mut params = m.face.request_params(msg);
        let name = crate::wire2026::name_of(method, &params).map(str::to_string);
        let extra = m.face.param_headers.for_request(method, &params);
        for round in 0..MAX_ROUNDS {
            // A retry is a new request: a new id (the answer goes back under the client's).
            let wire_id = if round == 0 {
                id.clone()
            } else {
                m.face.retry_id()
            };
            let body = json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&wire_id), "method": method, "params": params});
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
            let Some(answer) = read_final(resp, Some(self)).await else {
                return Err(RemoteError::NoResumeId {
                    url: self.url.to_string(),
                });
            };
            let mut v: Value = serde_json::from_slice(&answer.raw).unwrap_or_default();
            if !face::input_required(&v) {
                if &**method == "tools/list"
                    && let Some(r) = v.get_mut("result").and_then(Value::as_object_mut)
                {
                    m.face.param_headers.learn(r);
                }
                face::session_era(&mut v, method);
                v["id"] = jsonrpc::id_value(id);
                self.emit(v.to_string().as_bytes());
                return Ok(());
            }
            let result = v.get("result").cloned().unwrap_or_default();
            let mut waiting = Vec::new();
            for (key, question, rx) in m.face.questions(&result) {
                self.emit(&question.raw);
                if let Some(asked) = question.request_id().cloned() {
                    waiting.push((key, asked, rx));
                }
            }
            let answers = match m.face.answers(waiting, ANSWER_TIMEOUT).await {
                Ok(a) => a,
                Err(Unanswered::Refused(why)) => {
                    let e = jsonrpc::error_response(Some(id), code::INVALID_REQUEST, &why, None);
                    self.emit(&e.raw);
                    return Ok(());
                }
                Err(Unanswered::Gone) => {
                    let e = jsonrpc::error_response(
                        Some(id),
                        code::INVALID_REQUEST,
                        "the local client did not answer the server's question",
                        None,
                    );
                    self.emit(&e.raw);
                    return Ok(());
                }
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
            let Some(resp) = self
                .auth_refusal(resp, token.as_deref(), method, &mut auth_rounds)
                .await?
            else {
                continue;
            };
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

    /// (Re)open `subscriptions/listen`, for list changes and subscribed resources.
    fn listen(self: &Arc<Self>, m: &Arc<Modern>) {
        let token = self.shutdown.child_token();
        if let Some(old) = m
            .listen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(token.clone())
        {
            old.cancel();
        }
        let (me, m) = (self.clone(), m.clone());
        tokio::spawn(async move {
            let mut retry = Duration::from_millis(500);
            while !token.is_cancelled() {
                let body = json!({"jsonrpc": "2.0", "id": "mcpgate-listen",
                    "method": "subscriptions/listen", "params": m.face.listen_params()});
                let sent = tokio::select! {
                    r = me.modern_post(Bytes::from(body.to_string()), "subscriptions/listen", None, &[]) => r,
                    () = token.cancelled() => return,
                };
                if let Ok(Some(resp)) = sent
                    && is_sse(&resp)
                {
                    retry = Duration::from_millis(500);
                    let mut events = resp.bytes_stream().eventsource();
                    loop {
                        let ev = tokio::select! {
                            e = events.next() => e,
                            () = token.cancelled() => return,
                        };
                        let Some(Ok(ev)) = ev else { break };
                        if let Some(n) = face::listened(&ev.data) {
                            me.emit(&n.raw);
                        }
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
/// through `relay`.
async fn read_final(resp: reqwest::Response, relay: Option<&Remote>) -> Option<Message> {
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
            (Kind::Notification { .. }, Some(remote)) => remote.emit(&m.raw),
            _ => {}
        }
    }
    None
}
