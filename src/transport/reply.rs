//! HTTP answers shared by the transports: JSON-RPC error bodies with the right
//! status, JSON and SSE bodies.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;

use crate::jsonrpc::{self, RequestId, code};
use crate::session::Outgoing;

pub const SESSION_HEADER: &str = "mcp-session-id";

pub fn error(status: StatusCode, code: i64, message: &str) -> Response {
    error_for(status, None, code, message)
}

pub fn error_for(status: StatusCode, id: Option<&RequestId>, code: i64, message: &str) -> Response {
    let body = jsonrpc::error_response(id, code, message, None).raw;
    json(status, body)
}

pub fn json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        code::METHOD_NOT_FOUND,
        &format!(
            "nothing is served at {}; MCP services are at /<service>/mcp (streamable HTTP) and /<service>/sse (legacy SSE)",
            uri.path()
        ),
    )
}

pub fn unknown_service(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        code::METHOD_NOT_FOUND,
        &format!("no service named {name:?} is configured on this gateway; check the URL"),
    )
}

pub fn unknown_session() -> Response {
    error(
        StatusCode::NOT_FOUND,
        -32001,
        "Session not found: it expired or was closed; initialize a new session",
    )
}

/// An SSE body with keep-alive comments, so idle proxies do not cut the stream.
pub fn sse<S>(events: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

pub fn event(out: &Outgoing) -> Event {
    Event::default()
        .id(&*out.event_id)
        .data(String::from_utf8_lossy(&out.data))
}
