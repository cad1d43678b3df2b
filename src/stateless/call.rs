//! One 2026-07-28 request carried out on a kept session-era backend session,
//! read back as frames: notifications the client should see (progress, and
//! logs it asked for), then one final answer. A server-to-client request from
//! the backend ends the frames with an `input_required` result and holds the
//! call (`rounds`); its retry picks it up again here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::pool::Kept;
use super::request::MULTI_ROUND;
use super::rounds::{Asked, Binding, HOLD_FOR, Held, Rounds};
use super::shape;
use crate::jsonrpc::{Kind, Message, RequestId, code};
use crate::session::StreamReceiver;

/// After a backend asks its client something, how long to wait for it to ask
/// more (a server that asks several things at once sends them together).
const GATHER: Duration = Duration::from_millis(25);
const GATHER_MAX: usize = 16;

/// What the client is sent.
pub enum Frame {
    /// A notification, on an SSE stream.
    Notice(Bytes),
    /// The answer (with its HTTP status, when it is the only frame).
    Final(Bytes, u16),
}

/// Who is calling, for binding a `requestState`.
#[derive(Clone)]
pub struct Ctx {
    pub rounds: Arc<Rounds>,
    pub user: Option<crate::caller::UserId>,
    pub service: String,
    /// `private` when the answer may depend on who asks (policies, personal
    /// tokens): every gateway with sign-in.
    pub scope: &'static str,
}

pub struct Call {
    kept: Arc<Kept>,
    rx: Option<StreamReceiver>,
    internal: RequestId,
    client_id: RequestId,
    method: String,
    target: Option<String>,
    digest: String,
    capabilities: Value,
    want_logs: bool,
    ctx: Ctx,
    /// Answers the client sent before being asked (`inputResponses` on a
    /// first request), by key.
    given: Map<String, Value>,
    queued: VecDeque<Frame>,
    done: bool,
}

impl Call {
    /// A call whose backend request has been sent (or is held).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kept: Arc<Kept>,
        rx: StreamReceiver,
        internal: RequestId,
        client_id: RequestId,
        req: &super::request::Modern,
        ctx: Ctx,
    ) -> Call {
        Call {
            kept,
            rx: Some(rx),
            internal,
            client_id,
            method: req.method.clone(),
            target: target_of(req),
            // Only a call that can be held needs it (its requestState binds
            // it); most calls never ask the client anything.
            digest: if MULTI_ROUND.contains(&req.method.as_str())
                && ["elicitation", "sampling", "roots"]
                    .iter()
                    .any(|c| req.declares(c))
            {
                digest(req)
            } else {
                String::new()
            },
            capabilities: req.capabilities.clone(),
            want_logs: req.log_level.is_some(),
            ctx,
            given: if req.request_state.is_none() {
                req.input_responses.clone().unwrap_or_default()
            } else {
                Map::new()
            },
            queued: VecDeque::new(),
            done: false,
        }
    }

    /// The next frame; `None` after the final one.
    pub async fn next(&mut self) -> Option<Frame> {
        if let Some(f) = self.queued.pop_front() {
            if matches!(f, Frame::Final(..)) {
                self.finish();
            }
            return Some(f);
        }
        if self.done {
            return None;
        }
        loop {
            let item = match self.rx.as_mut()?.rx.recv().await {
                Some(item) => item,
                None => {
                    self.finish();
                    let e = crate::jsonrpc::error_response(
                        Some(&self.client_id),
                        code::BACKEND_UNAVAILABLE,
                        "the backend session ended before answering; send the request again",
                        None,
                    );
                    return Some(Frame::Final(e.raw, 502));
                }
            };
            if item.is_response {
                return Some(self.complete(&item.data));
            }
            let Ok(msg) = Message::parse(item.data) else {
                continue;
            };
            match &msg.kind {
                Kind::Notification { method } => {
                    if self.relays(method) {
                        return Some(Frame::Notice(msg.raw));
                    }
                }
                Kind::Request { id, method } => {
                    if let Some(f) = self.asked(id.clone(), method.to_string(), &msg).await {
                        return Some(f);
                    }
                }
                Kind::Response { .. } => {}
            }
        }
    }

    /// The backend asked its client something: answer what the gateway can,
    /// refuse what the client cannot be asked, else hold the call.
    async fn asked(&mut self, id: RequestId, method: String, first: &Message) -> Option<Frame> {
        if method == "ping" {
            self.kept.answer(&id, Ok(&json!({}))).await;
            return None;
        }
        let mut asked = vec![(id, method, params_of(first))];
        // Gather what else it asks at once.
        while asked.len() < GATHER_MAX {
            let rx = self.rx.as_mut()?;
            let Ok(Some(item)) = tokio::time::timeout(GATHER, rx.rx.recv()).await else {
                break;
            };
            if item.is_response {
                // It answered after all (it did not wait for the client).
                for (id, _, _) in &asked {
                    self.kept
                        .answer(id, Err((code::INVALID_REQUEST, "the request completed")))
                        .await;
                }
                return Some(self.complete(&item.data));
            }
            let Ok(msg) = Message::parse(item.data) else {
                continue;
            };
            match &msg.kind {
                Kind::Request { id, method } if &**method == "ping" => {
                    self.kept.answer(id, Ok(&json!({}))).await;
                }
                Kind::Request { id, method } => {
                    asked.push((id.clone(), method.to_string(), params_of(&msg)))
                }
                Kind::Notification { method } => {
                    if self.relays(method) {
                        self.queued.push_back(Frame::Notice(msg.raw));
                    }
                }
                Kind::Response { .. } => {}
            }
        }
        let multi_round = MULTI_ROUND.contains(&self.method.as_str());
        let mut keep: Vec<Asked> = Vec::new();
        for (id, method, params) in asked {
            let capability = match method.as_str() {
                "elicitation/create" => "elicitation",
                "sampling/createMessage" => "sampling",
                "roots/list" => "roots",
                _ => {
                    let why = format!(
                        "{method} cannot be forwarded: MCP 2026-07-28 clients answer only elicitation, sampling and roots requests"
                    );
                    self.kept
                        .answer(&id, Err((code::METHOD_NOT_FOUND, &why)))
                        .await;
                    continue;
                }
            };
            if !multi_round {
                let why = format!(
                    "{} cannot ask the client anything in MCP 2026-07-28",
                    self.method
                );
                self.kept
                    .answer(&id, Err((code::INVALID_REQUEST, &why)))
                    .await;
                continue;
            }
            if self.capabilities.get(capability).is_none() {
                // The client did not declare what the server needs: tell the
                // client which capability (-32021), and end the backend call.
                self.kept
                    .answer(
                        &id,
                        Err((
                            code::METHOD_NOT_FOUND,
                            "the client did not declare this capability",
                        )),
                    )
                    .await;
                self.kept
                    .cancel(&self.internal, "the client lacks a capability");
                self.finish();
                self.rx = None;
                let e = crate::jsonrpc::error_response(
                    Some(&self.client_id),
                    code::MISSING_CAPABILITY,
                    &format!(
                        "Missing required client capability: {} needs the client capability {capability:?}, which this request does not declare in _meta[\"io.modelcontextprotocol/clientCapabilities\"]",
                        self.method
                    ),
                    Some(json!({"requiredCapabilities": {capability: {}}})),
                );
                return Some(Frame::Final(e.raw, 400));
            }
            let key = unique_key(&key_of(&id), &keep);
            if let Some(answer) = self.given.remove(&key).filter(Value::is_object) {
                // The client sent this answer with the request itself (a
                // server may ask for what it was already given).
                self.kept.answer(&id, Ok(&answer)).await;
                continue;
            }
            keep.push(Asked {
                key,
                backend_id: id,
                method,
                params,
            });
        }
        if keep.is_empty() {
            // Everything was answered here: the call goes on.
            return self.queued.pop_front();
        }
        Some(self.hold(keep))
    }

    /// Hold the call until the client retries with answers to `asked`.
    fn hold(&mut self, asked: Vec<Asked>) -> Frame {
        let Some(rx) = self.rx.take() else {
            return self.final_error(code::INTERNAL_ERROR, "the call was already held");
        };
        let requests: Map<String, Value> = asked
            .iter()
            .map(|a| {
                let mut r = json!({"method": a.method});
                if !a.params.is_null() {
                    r["params"] = a.params.clone();
                }
                (a.key.clone(), r)
            })
            .collect();
        let held = Held {
            owner: self
                .ctx
                .user
                .as_ref()
                .map(|u| u.as_str().to_string())
                .unwrap_or_default(),
            kept: self.kept.clone(),
            rx,
            internal: self.internal.clone(),
            asked,
            method: self.method.clone(),
            expires: std::time::Instant::now() + HOLD_FOR,
        };
        let bind = Binding {
            user: self.ctx.user.as_ref(),
            service: &self.ctx.service,
            method: &self.method,
            digest: &self.digest,
        };
        let Some(state) = self.ctx.rounds.hold(held, &bind) else {
            return self.final_error(
                code::INTERNAL_ERROR,
                "the request state could not be sealed",
            );
        };
        self.finish();
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": state,
        });
        let body = crate::jsonrpc::result_response(&self.client_id, &result).raw;
        // Notifications gathered with the question go out before it.
        self.queued.push_back(Frame::Final(body, 200));
        match self.queued.pop_front() {
            Some(first) => first,
            None => self.final_error(code::INTERNAL_ERROR, "nothing to send"),
        }
    }

    /// The backend's answer, reshaped: the last frame.
    fn complete(&mut self, answer: &[u8]) -> Frame {
        self.finish();
        let (body, status) = shape::answer(
            answer,
            &self.client_id,
            &self.method,
            self.target.as_deref(),
            self.ctx.scope,
        );
        Frame::Final(body, status)
    }

    /// Notifications the client sees on its request's stream: progress, and
    /// logs when it asked for them.
    fn relays(&self, method: &str) -> bool {
        method == "notifications/progress" || (method == "notifications/message" && self.want_logs)
    }

    fn final_error(&mut self, code: i64, message: &str) -> Frame {
        self.finish();
        let e = crate::jsonrpc::error_response(Some(&self.client_id), code, message, None);
        Frame::Final(e.raw, 500)
    }

    fn finish(&mut self) {
        self.done = true;
    }

    /// Resume a held call for the retry `req` (already bound-checked).
    pub async fn resume(
        held: Held,
        req: &super::request::Modern,
        client_id: RequestId,
        ctx: Ctx,
    ) -> Call {
        let responses = req.input_responses.clone().unwrap_or_default();
        let mut missing = Vec::new();
        for a in held.asked {
            match responses.get(&a.key) {
                Some(answer) if answer.is_object() => {
                    held.kept.answer(&a.backend_id, Ok(answer)).await;
                }
                _ => missing.push(a),
            }
        }
        let mut call = Call::new(held.kept, held.rx, held.internal, client_id, req, ctx);
        if !missing.is_empty() {
            // Ask again for what is still unanswered.
            let frame = call.hold(missing);
            call.queued.push_back(frame);
        }
        call
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The client closed its stream before the answer: on HTTP that is
        // how a 2026-07-28 client cancels.
        if !self.done && self.rx.is_some() {
            self.kept
                .cancel(&self.internal, "the client closed the request's stream");
        }
    }
}

fn params_of(msg: &Message) -> Value {
    #[derive(serde::Deserialize)]
    struct P {
        params: Option<Value>,
    }
    serde_json::from_slice::<P>(&msg.raw)
        .ok()
        .and_then(|p| p.params)
        .unwrap_or(Value::Null)
}

/// The key a client answers a backend request by: the backend's own id for
/// it (a server that names its requests, e.g. `user_name`, gets those names).
fn key_of(id: &RequestId) -> String {
    match crate::jsonrpc::id_value(id) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// `base`, `base_2`, ...: keys unique within one round.
fn unique_key(base: &str, taken: &[Asked]) -> String {
    let mut n = 1;
    loop {
        let key = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        if !taken.iter().any(|a| a.key == key) {
            return key;
        }
        n += 1;
    }
}

/// What a `resources/read` reads (for the error's `data.uri`).
fn target_of(req: &super::request::Modern) -> Option<String> {
    req.params
        .get("uri")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What a `requestState` is bound to: the name (or uri) and the arguments
/// (absent arguments and `{}` are the same request).
pub fn digest(req: &super::request::Modern) -> String {
    let name = req
        .params
        .get("name")
        .or_else(|| req.params.get("uri"))
        .cloned()
        .unwrap_or(Value::Null);
    let args = match req.params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a) => a.clone(),
    };
    let text = super::request::canonical(&json!({"n": name, "a": args}));
    crate::util::sha256_hex(text.as_bytes())
}
