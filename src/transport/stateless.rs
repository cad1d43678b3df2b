//! Streamable HTTP for MCP 2026-07-28 clients: one POST per request, no
//! session. `streamable::post` sends a request here when it is meant as
//! 2026-07-28 (its `MCP-Protocol-Version` header, or its `_meta`); the work is
//! `crate::stateless`'s, this file is only HTTP: refusals with their status,
//! and an answer as plain JSON, or as SSE when notifications come first.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;

use super::pipeline::{Client, open_session};
use super::{AppState, reply};
use crate::jsonrpc::{Incoming, code};
use crate::stateless::{Call, Frame, Key, Modern, PoolError, request};

/// Whether a POST without `Mcp-Session-Id` is meant as 2026-07-28.
pub fn is_modern(headers: &HeaderMap, incoming: &Incoming) -> bool {
    !incoming.batch && request::is_modern(headers, &incoming.messages[0])
}

pub async fn post(
    app: &Arc<AppState>,
    client: &Client,
    headers: &HeaderMap,
    incoming: Incoming,
) -> Response {
    let Some(msg) = incoming.messages.into_iter().next() else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "empty request",
        );
    };
    let req = match request::check(headers, &msg) {
        Ok(r) => r,
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return reply::json(status, refusal.body(msg.request_id()));
        }
    };
    let Some(id) = req.id.clone() else {
        // Notifications have nothing to do in 2026-07-28 (cancelling is
        // closing the request's stream).
        return Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Body::empty())
            .unwrap_or_default();
    };
    // A 2026-07-28 server, not under policy: forwarded as it is.
    match app
        .routes
        .passthrough(&client.service, client.caller.as_ref())
        .await
    {
        Ok(Some(p)) => return forward(client, headers, &msg, &req, p).await,
        Ok(None) => {}
        Err(e) => {
            return reply::json(
                StatusCode::BAD_GATEWAY,
                crate::jsonrpc::error_response(
                    Some(&id),
                    code::BACKEND_UNAVAILABLE,
                    &e.to_string(),
                    None,
                )
                .raw,
            );
        }
    }
    let user = client.caller.as_ref().map(|c| c.user.clone());
    let ctx = app.bridge.ctx(
        user.clone(),
        client.service.name.as_str(),
        app.auth.is_some(),
    );
    // A retry of a multi-round-trip request goes back to its held call.
    if let Some(state) = &req.request_state {
        return match app.bridge.resume(&req, state, ctx).await {
            Ok(call) => frames(call).await,
            Err(e) => reply::json(
                StatusCode::BAD_REQUEST,
                crate::jsonrpc::error_response(
                    Some(&id),
                    code::INVALID_PARAMS,
                    &e.to_string(),
                    None,
                )
                .raw,
            ),
        };
    }
    let key = Key {
        service: client.service.name.clone(),
        user,
        capabilities: req.capability_key(),
    };
    let kept = app
        .bridge
        .session(key, &req, || open_session(app, client, false, Some(&id)))
        .await;
    let kept = match kept {
        Ok(k) => k,
        Err(PoolError::Open(refused)) => return refused,
        Err(PoolError::Init(answer)) => return init_failed(&id, &client.service.name, answer),
    };
    match req.method.as_str() {
        "server/discover" => reply::json(StatusCode::OK, app.bridge.discover(&kept, &id, &ctx)),
        "subscriptions/listen" => listen(app, kept, &req, id).await,
        _ => match app.bridge.call(kept, &req, ctx).await {
            Ok(call) => frames(call).await,
            Err(body) => reply::json(StatusCode::BAD_GATEWAY, body),
        },
    }
}

async fn listen(
    app: &AppState,
    kept: Arc<crate::stateless::Kept>,
    req: &Modern,
    id: crate::jsonrpc::RequestId,
) -> Response {
    match app.bridge.listen(kept, req, id.clone()).await {
        Some(events) => {
            let events =
                futures_util::StreamExt::map(events, |b| reply::sse_event(None, None, None, &b));
            reply::sse(Vec::new(), events)
        }
        None => reply::json(
            StatusCode::BAD_GATEWAY,
            crate::jsonrpc::error_response(
                Some(&id),
                code::BACKEND_UNAVAILABLE,
                "the backend session ended; listen again",
                None,
            )
            .raw,
        ),
    }
}

/// The backend refused `initialize`: its error under the client's id, or ours.
fn init_failed(
    id: &crate::jsonrpc::RequestId,
    service: &crate::config::ServiceName,
    answer: Option<Bytes>,
) -> Response {
    let reason = answer
        .and_then(|a| serde_json::from_slice::<serde_json::Value>(&a).ok())
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no answer".into());
    reply::json(
        StatusCode::BAD_GATEWAY,
        crate::jsonrpc::error_response(
            Some(id),
            code::BACKEND_UNAVAILABLE,
            &format!(
                "service {:?} could not be initialized for this request: {reason}",
                service.as_str()
            ),
            None,
        )
        .raw,
    )
}

/// Plain JSON when the answer is the first thing said; SSE otherwise.
async fn frames(mut call: Call) -> Response {
    match call.next().await {
        Some(Frame::Final(body, status)) => {
            reply::json(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
        }
        Some(Frame::Notice(first)) => {
            let head = vec![reply::sse_event(None, None, None, &first)];
            let tail = stream::unfold(Some(call), |call| async move {
                let mut call = call?;
                match call.next().await? {
                    Frame::Notice(b) => Some((reply::sse_event(None, None, None, &b), Some(call))),
                    Frame::Final(b, _) => Some((reply::sse_event(None, None, None, &b), None)),
                }
            });
            reply::sse(head, tail)
        }
        None => reply::error(
            StatusCode::BAD_GATEWAY,
            code::BACKEND_UNAVAILABLE,
            "no answer from the backend",
        ),
    }
}

/// Headers of the client's request that go to a 2026-07-28 server as they are
/// (never its `Authorization`: that token is the gateway's).
fn forwarded_header(name: &str) -> bool {
    (name.starts_with("mcp-") && name != "mcp-session-id")
        || name == "accept"
        || name == "content-type"
}

/// Forward a 2026-07-28 request to a 2026-07-28 server as it is: the client's
/// body and `Mcp-*` headers, the service's own headers (credentials) instead
/// of the client's token; the answer back as it is, JSON or SSE, with its
/// status. Audited like a session's call.
async fn forward(
    client: &Client,
    headers: &HeaderMap,
    msg: &crate::jsonrpc::Message,
    req: &Modern,
    target: crate::route::Passthrough,
) -> Response {
    let svc = &client.service;
    let id = req.id.clone();
    let audit = crate::session::Forwarded::of(
        client.caller.as_deref(),
        svc.name.as_str(),
        &req.method,
        &msg.raw,
        svc.audit_arguments,
    );
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if forwarded_header(name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    for (k, v) in &target.headers {
        if let (Ok(name), Ok(mut value)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            value.set_sensitive(true);
            out.insert(name, value);
        }
    }
    let sent = svc
        .http
        .post(target.url)
        .headers(out)
        .body(msg.raw.clone())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            audit.done(None);
            let message = format!(
                "service {:?} is unreachable: {}",
                svc.name.as_str(),
                if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                }
            );
            return reply::json(
                StatusCode::BAD_GATEWAY,
                crate::jsonrpc::error_response(
                    id.as_ref(),
                    code::BACKEND_UNAVAILABLE,
                    &message,
                    None,
                )
                .raw,
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let sse = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let body = if sse {
        // Streamed as it comes; the last event is kept for the audit record.
        let tail = stream::unfold(
            (resp.bytes_stream(), Vec::<u8>::new(), Some(audit)),
            |(mut s, mut last, mut audit)| async move {
                match futures_util::StreamExt::next(&mut s).await {
                    Some(Ok(chunk)) => {
                        last.extend_from_slice(&chunk);
                        if last.len() > 65_536 {
                            last.drain(..last.len() - 65_536);
                        }
                        Some((Ok::<Bytes, std::io::Error>(chunk), (s, last, audit)))
                    }
                    _ => {
                        if let Some(a) = audit.take() {
                            a.done(last_event(&last).as_deref());
                        }
                        None
                    }
                }
            },
        );
        Body::from_stream(tail)
    } else {
        let bytes = resp.bytes().await.unwrap_or_default();
        audit.done(Some(&bytes));
        Body::from(bytes)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
    }
    r
}

/// The data of the last complete SSE event in `buf`.
fn last_event(buf: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(buf);
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().as_bytes().to_vec())
}
