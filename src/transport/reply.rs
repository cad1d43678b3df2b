//! HTTP answers shared by the transports: JSON-RPC error bodies with the right
//! status, JSON and SSE bodies.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};

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
    let message = if name == crate::config::AggregateSettings::ROOT {
        "no aggregated endpoint is served at /mcp on this gateway (see proxy.aggregate: enabled, path); use /<service>/mcp".to_string()
    } else {
        format!("no service named {name:?} is configured on this gateway; check the URL")
    };
    error(StatusCode::NOT_FOUND, code::METHOD_NOT_FOUND, &message)
}

pub fn unknown_session() -> Response {
    error(
        StatusCode::NOT_FOUND,
        code::SESSION_NOT_FOUND,
        "Session not found: it expired or was closed; initialize a new session",
    )
}

/// One SSE event, encoded. Unlike most encoders this always writes a `data:`
/// line, because a priming event (id, empty data) must reach the client's parser
/// as an event for it to learn the id to resume from.
pub fn sse_event(
    id: Option<&str>,
    event: Option<&str>,
    retry: Option<Duration>,
    data: &[u8],
) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 48);
    if let Some(e) = event {
        b.put_slice(b"event: ");
        b.put_slice(e.as_bytes());
        b.put_u8(b'\n');
    }
    if let Some(id) = id {
        b.put_slice(b"id: ");
        b.put_slice(id.as_bytes());
        b.put_u8(b'\n');
    }
    if let Some(r) = retry {
        b.put_slice(format!("retry: {}\n", r.as_millis()).as_bytes());
    }
    // A message may span lines (pretty-printed JSON): one data line each.
    for line in data.split(|c| *c == b'\n') {
        b.put_slice(b"data: ");
        b.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        b.put_u8(b'\n');
    }
    b.put_u8(b'\n');
    b.freeze()
}

pub fn event(out: &Outgoing) -> Bytes {
    sse_event(Some(&out.event_id), None, None, &out.data)
}

/// How often an idle SSE stream gets a comment, so proxies do not cut it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An SSE response: `head` first, then `tail` until it ends, with keep-alive
/// comments while idle.
pub fn sse<S>(head: Vec<Bytes>, tail: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let tail = Box::pin(tail);
    let tail = stream::unfold(tail, |mut tail| async move {
        tokio::select! {
            next = tail.next() => next.map(|b| (b, tail)),
            () = tokio::time::sleep(KEEP_ALIVE) => Some((Bytes::from_static(b": keep-alive\n\n"), tail)),
        }
    });
    let body = stream::iter(head).chain(tail).map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
