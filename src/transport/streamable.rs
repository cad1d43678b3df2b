//! Streamable HTTP towards clients (MCP 2025-03-26, 2025-06-18, 2025-11-25).
//!
//! A POST is answered with plain JSON when the backend's first word on it is the
//! answer itself, and switches to SSE as soon as anything else comes first
//! (progress, logging, a sampling request): cheap for the common case, complete
//! for the rest.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;

use super::pipeline::{Client, open_session};
use super::{AppState, reply};
use crate::caller::UserId;
use crate::jsonrpc::SUPPORTED_VERSIONS;
use crate::jsonrpc::{self, Incoming, code};
use crate::service::Service;
use crate::session::{Outgoing, Session, StreamReceiver, SubmitError};

const VERSION_HEADER: &str = "mcp-protocol-version";
/// How long a client should wait before resuming a stream it lost.
const PRIMING_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn post(
    State(gw): State<Arc<AppState>>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let svc = client.service.clone();
    if !accepts(&headers, &["application/json", "text/event-stream"]) {
        return reply::error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: the Accept header must list both application/json and text/event-stream",
        );
    }
    let incoming = match read_jsonrpc(&headers, body, gw.settings.max_body_bytes).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    if !headers.contains_key(reply::SESSION_HEADER) {
        // The era is decided per request: 2026-07-28 says so in its header
        // (or `_meta`); everything else belongs to the session era.
        if super::stateless::is_modern(&headers, &incoming) {
            return super::stateless::post(&gw, &client, &headers, incoming).await;
        }
        return without_session(&gw, &client, &headers, incoming).await;
    }
    let session = match session_of(&gw, &svc, &headers, client.owner()) {
        Ok(s) if !s.legacy => s,
        Ok(_) => return reply::unknown_session(),
        Err(resp) => return resp,
    };
    if let Err(resp) = check_version_header(&headers) {
        return resp;
    }
    if incoming
        .messages
        .iter()
        .any(|m| m.method() == Some("initialize"))
    {
        return reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Invalid Request: this session is already initialized; send initialize without Mcp-Session-Id to start a new one",
        );
    }
    if incoming.batch
        && session
            .protocol_version()
            .is_some_and(|v| v.as_str() >= "2025-06-18")
    {
        return reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Invalid Request: JSON-RPC batches are not allowed in protocol version 2025-06-18 and later",
        );
    }
    let batch = incoming.batch;
    respond(&session, incoming.messages, batch, false).await
}

/// A POST without `Mcp-Session-Id`: only `initialize` may open a session.
async fn without_session(
    gw: &AppState,
    client: &Client,
    _headers: &HeaderMap,
    incoming: Incoming,
) -> Response {
    let first = &incoming.messages[0];
    let is_initialize = !incoming.batch && first.method() == Some("initialize");
    if !is_initialize {
        return reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required; send initialize first to open a session",
        );
    }
    if let Some(version) = first.initialize_version()
        && !SUPPORTED_VERSIONS.contains(&version.as_str())
        && version.as_str() > SUPPORTED_VERSIONS[0]
    {
        // Newer than anything we speak: the backend will negotiate down, as the
        // initialize handshake intends. Nothing to refuse here.
        tracing::debug!(requested = %version, "client asked for a newer protocol version");
    }
    let session = match open_session(gw, client, false, first.request_id()).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    respond(&session, incoming.messages, false, true).await
}

async fn respond(
    session: &Arc<Session>,
    messages: Vec<jsonrpc::Message>,
    batch: bool,
    new_session: bool,
) -> Response {
    let receiver = match session.submit(messages).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::empty())
                .unwrap_or_default();
        }
        Err(SubmitError::Closed) => return reply::unknown_session(),
        Err(e @ SubmitError::DuplicateId(_)) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                &e.to_string(),
            );
        }
    };
    let mut resp = answer(receiver, batch).await;
    if new_session {
        if session.is_closed() || init_failed(&resp) {
            session.close("initialize failed").await;
        } else if let Ok(v) = HeaderValue::from_str(session.id.as_str()) {
            resp.headers_mut().insert(reply::SESSION_HEADER, v);
        }
    }
    resp
}

fn init_failed(resp: &Response) -> bool {
    resp.extensions().get::<InitFailed>().is_some()
}

#[derive(Clone, Copy)]
struct InitFailed;

/// Wait for the first thing said on the stream, then choose JSON or SSE.
async fn answer(mut receiver: StreamReceiver, batch: bool) -> Response {
    let mut buffered: Vec<Outgoing> = Vec::new();
    loop {
        match receiver.rx.recv().await {
            None => {
                // Every request was cancelled (or the stream ended) before an answer.
                if buffered.is_empty() {
                    return Response::builder()
                        .status(StatusCode::ACCEPTED)
                        .body(Body::empty())
                        .unwrap_or_default();
                }
                return json_answer(buffered, batch);
            }
            Some(item) => {
                let (is_response, last) = (item.is_response, item.last);
                buffered.push(item);
                if !is_response {
                    break;
                }
                if last {
                    return json_answer(buffered, batch);
                }
            }
        }
    }
    sse_answer(receiver, buffered)
}

fn json_answer(items: Vec<Outgoing>, batch: bool) -> Response {
    let body = if batch {
        let mut b = BytesMut::new();
        b.put_u8(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                b.put_u8(b',');
            }
            b.put_slice(&item.data);
        }
        b.put_u8(b']');
        b.freeze()
    } else {
        items.into_iter().next().map(|i| i.data).unwrap_or_default()
    };
    let failed = !batch && is_error(&body);
    let mut resp = reply::json(StatusCode::OK, body);
    if failed {
        resp.extensions_mut().insert(InitFailed);
    }
    resp
}

fn is_error(body: &Bytes) -> bool {
    #[derive(serde::Deserialize)]
    struct E<'a> {
        #[serde(borrow)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<E>(body).is_ok_and(|e| e.error.is_some())
}

/// An SSE body: priming event, what was already received, then the rest until
/// the last answer.
fn sse_answer(receiver: StreamReceiver, buffered: Vec<Outgoing>) -> Response {
    let done = buffered.iter().any(|i| i.last);
    let priming = receiver
        .priming_id
        .map(|id| reply::sse_event(Some(&id), None, Some(PRIMING_RETRY), b""));
    let head: Vec<Bytes> = priming
        .into_iter()
        .chain(buffered.iter().map(reply::event))
        .collect();
    let tail = stream::unfold((receiver.rx, done), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let item = rx.recv().await?;
        let last = item.last;
        Some((reply::event(&item), (rx, last)))
    });
    reply::sse(head, tail)
}

/// GET: the stream for server-initiated messages, or the resumption of any
/// stream with `Last-Event-ID`.
pub async fn get(State(gw): State<Arc<AppState>>, client: Client, headers: HeaderMap) -> Response {
    let svc = client.service.clone();
    if !accepts(&headers, &["text/event-stream"]) {
        return reply::error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: the Accept header must list text/event-stream",
        );
    }
    if let Some(resp) = modern_without_post(&headers) {
        return resp;
    }
    let session = match session_of(&gw, &svc, &headers, client.owner()) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    if let Err(resp) = check_version_header(&headers) {
        return resp;
    }
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    match session.open_get(last_event_id) {
        Ok(receiver) => sse_answer(receiver, Vec::new()),
        Err(_) => reply::unknown_session(),
    }
}

/// DELETE: the client ends its session; the backend goes with it.
pub async fn delete(
    State(gw): State<Arc<AppState>>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    let svc = client.service.clone();
    if let Some(resp) = modern_without_post(&headers) {
        return resp;
    }
    let session = match session_of(&gw, &svc, &headers, client.owner()) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    session.close("the client ended it").await;
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::empty())
        .unwrap_or_default()
}

/// MCP 2026-07-28 has no GET stream and no session to delete: a sessionless
/// GET or DELETE that says it is 2026-07-28 gets 405 (POST only).
fn modern_without_post(headers: &HeaderMap) -> Option<Response> {
    let modern = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| jsonrpc::MODERN_VERSIONS.contains(&v));
    if !modern || headers.contains_key(reply::SESSION_HEADER) {
        return None;
    }
    let mut resp = reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        code::INVALID_REQUEST,
        "Method Not Allowed: MCP 2026-07-28 uses POST only (listen for notifications with subscriptions/listen)",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    Some(resp)
}

/// The session named by `Mcp-Session-Id`: 400 without the header, 404 when it is
/// unknown, closed, or another service's.
fn session_of(
    gw: &AppState,
    svc: &Service,
    headers: &HeaderMap,
    caller: Option<&UserId>,
) -> Result<Arc<Session>, Response> {
    let Some(sid) = headers.get(reply::SESSION_HEADER) else {
        return Err(reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    sid.to_str()
        .ok()
        .and_then(|s| gw.sessions.get(s, &svc.name, caller))
        .ok_or_else(reply::unknown_session)
}

fn check_version_header(headers: &HeaderMap) -> Result<(), Response> {
    for v in headers.get_all(VERSION_HEADER) {
        let v = v.to_str().unwrap_or("(not text)");
        if !SUPPORTED_VERSIONS.contains(&v) {
            return Err(reply::error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                &format!(
                    "Bad Request: unsupported MCP-Protocol-Version {v:?}; supported versions: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `Accept` admits every one of `wanted` (wildcards count).
fn accepts(headers: &HeaderMap, wanted: &[&str]) -> bool {
    let ranges: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|r| r.split(';').next())
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    wanted.iter().all(|w| {
        let (ty, _) = w.split_once('/').unwrap_or((w, ""));
        ranges
            .iter()
            .any(|r| r == w || r == "*/*" || *r == format!("{ty}/*"))
    })
}

/// A JSON-RPC body: 415 unless `application/json`, 413 beyond the limit, 400
/// unless JSON-RPC. Shared by both client transports.
pub(super) async fn read_jsonrpc(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Incoming, Response> {
    if !is_json(headers) {
        return Err(reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    let bytes = read_body(body, limit).await?;
    jsonrpc::parse_body(&bytes)
        .map_err(|e| reply::error(StatusCode::BAD_REQUEST, e.code(), e.message()))
}

/// Read the body up to the limit: 413 beyond it, with a JSON-RPC error.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            &format!("Payload Too Large: the body exceeds {limit} bytes (proxy.maxBodyBytes)"),
        )
    };
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: the body could not be read",
        )),
    }
}
