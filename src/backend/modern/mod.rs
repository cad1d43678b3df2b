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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{BackendError, InboxRef, body_excerpt, header_map};
use crate::config::ServiceName;
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::service::Service;
pub use crate::wire2026::VERSION;
use crate::wire2026::face::{self, Face, Local, MAX_ROUNDS, Unanswered};

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
    request_timeout: Duration,
    /// What the session-era client declared, what it waits for, what is in flight.
    face: Face,
    listen: Mutex<Option<CancellationToken>>,
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
                request_timeout: service.limits.request_timeout,
                face: Face::new(discover),
                listen: Mutex::new(None),
            }),
        })
    }

    pub async fn send(&self, msg: Message) {
        let inner = &self.inner;
        if let Kind::Response { id: Some(id) } = &msg.kind {
            inner.face.answered(id, &msg);
            return;
        }
        match inner.face.local(&msg, inner.service.as_str()) {
            Some(Local::Answer(result)) => {
                if let Some(id) = msg.request_id() {
                    inner.answer(id, result);
                }
            }
            Some(Local::Resubscribed) => {
                if let Some(id) = msg.request_id() {
                    inner.answer(id, json!({}));
                }
                // The listen stream names the resources: open it anew, if open.
                if lock(&inner.listen).is_some() {
                    inner.clone().relisten();
                }
            }
            // A session-era client's GET stream stands for listening here.
            Some(Local::Listen | Local::Done) => {}
            None => {
                let Some(id) = msg.request_id().cloned() else {
                    return;
                };
                let token = inner.face.track(&id, &inner.cancel);
                let inner = inner.clone();
                // A request's answer may take minutes: never hold up the caller.
                tokio::spawn(async move {
                    tokio::select! {
                        () = inner.clone().call(msg) => {},
                        () = token.cancelled() => {},
                    }
                    inner.face.untrack(&id);
                });
            }
        }
    }

    /// The client opened its GET stream: listen for the server's notifications.
    pub fn client_listens(&self) {
        if lock(&self.inner.listen).is_none() {
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
        for (k, v) in self.face.param_headers.for_request(method, params) {
            req = req.header(k, v);
        }
        req.body(body.to_string())
    }

    /// Carry out one client request, round after round.
    async fn call(self: Arc<Self>, msg: Message) {
        let Kind::Request { id, method } = &msg.kind else {
            return;
        };
        let mut params = self.face.request_params(&msg);
        for round in 0..MAX_ROUNDS {
            // A retry is a new request: a new id (the answer goes back under the client's).
            let wire_id = if round == 0 {
                id.clone()
            } else {
                self.face.retry_id()
            };
            let Some(answer) = self.exchange(method, &params, &wire_id, id).await else {
                return;
            };
            let mut v: Value = match serde_json::from_slice(&answer.raw) {
                Ok(v) => v,
                Err(_) => return self.deliver(answer, Some(id.clone())),
            };
            if !face::input_required(&v) {
                if &**method == "tools/list"
                    && let Some(r) = v.get_mut("result").and_then(Value::as_object_mut)
                {
                    self.face.param_headers.learn(r);
                }
                face::session_era(&mut v, method);
                v["id"] = jsonrpc::id_value(id);
                if let Some(m) = jsonrpc::from_value(&v) {
                    self.deliver(m, Some(id.clone()));
                }
                return;
            }
            let result = v.get("result").cloned().unwrap_or_default();
            // The server's questions go to the client on this request's stream.
            let mut waiting = Vec::new();
            for (key, question, rx) in self.face.questions(&result) {
                let asked = question.request_id().cloned();
                self.deliver(question, Some(id.clone()));
                if let Some(asked) = asked {
                    waiting.push((key, asked, rx));
                }
            }
            match self.face.answers(waiting, self.request_timeout).await {
                Ok(answers) => {
                    params.insert("inputResponses".into(), Value::Object(answers));
                }
                Err(Unanswered::Refused(why)) => return self.fail(id, code::INVALID_REQUEST, why),
                // Timed out or the session ended: the session reports it.
                Err(Unanswered::Gone) => return,
            }
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

    /// (Re)open the listen stream.
    fn relisten(self: Arc<Self>) {
        let token = self.cancel.child_token();
        if let Some(old) = lock(&self.listen).replace(token.clone()) {
            old.cancel();
        }
        tokio::spawn(async move { listen::run(self, token).await });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
