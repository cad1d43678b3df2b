//! The test server's streamable HTTP mode: sessions, JSON answers for quick
//! methods, SSE answers for `tools/call` (so progress and server requests ride on
//! the request's own stream), a GET stream, DELETE.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{Ctx, Session, err, handle};

#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    session: Arc<Session>,
    /// Where messages go that belong to no request (the GET stream, if open).
    get_tx: Option<mpsc::UnboundedSender<Value>>,
}

type Shared = Arc<Sessions>;

pub async fn serve(addr: &str) {
    let state: Shared = Arc::new(Sessions::default());
    let app = Router::new()
        .route("/mcp", post(on_post).get(on_get).delete(on_delete))
        .route("/stats", axum::routing::get(on_stats))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let local = listener.local_addr().expect("local addr");
    println!("listening on http://{local}/mcp");
    axum::serve(listener, app).await.expect("serve");
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn json_response(v: &Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// DNS-rebinding protection, as any localhost MCP server must have: the Host
/// and Origin headers must name this machine.
fn foreign(headers: &HeaderMap) -> Option<Response> {
    let local = |h: &str| {
        let host = h
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(h, |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    };
    let host_ok = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .is_none_or(local);
    let origin_ok = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| {
            o.split_once("://")
                .is_some_and(|(_, rest)| local(rest.trim_end_matches('/')))
        });
    (!host_ok || !origin_ok).then(|| {
        (
            StatusCode::FORBIDDEN,
            json_response(&err(
                &Value::Null,
                -32000,
                "Forbidden: Host/Origin is not localhost",
            )),
        )
            .into_response()
    })
}

async fn on_post(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = foreign(&headers) {
        return r;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            json_response(&err(&Value::Null, -32700, "Parse error")),
        )
            .into_response();
    };
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (sid, session) = match (session_id(&headers), method.as_deref()) {
        (None, Some("initialize")) => {
            let sid = format!("ts-{:032x}", rand::random::<u128>());
            let session = Arc::new(Session::default());
            if let Ok(mut m) = st.map.lock() {
                m.insert(
                    sid.clone(),
                    Entry {
                        session: session.clone(),
                        get_tx: None,
                    },
                );
            }
            (sid, session)
        }
        (None, _) => {
            return (
                StatusCode::BAD_REQUEST,
                json_response(&err(&Value::Null, -32000, "Bad Request: missing session")),
            )
                .into_response();
        }
        (Some(sid), _) => {
            let found = st
                .map
                .lock()
                .ok()
                .and_then(|m| m.get(&sid).map(|e| e.session.clone()));
            match found {
                Some(s) => (sid, s),
                None => {
                    return (
                        StatusCode::NOT_FOUND,
                        json_response(&err(&Value::Null, -32001, "Session not found")),
                    )
                        .into_response();
                }
            }
        }
    };
    if method.is_none() {
        session.on_response(&msg);
        return StatusCode::ACCEPTED.into_response();
    }
    if msg.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    // Tools that talk to the client while running answer on an SSE stream; the
    // rest answer with plain JSON, as most servers do.
    const INTERACTIVE: [&str; 12] = [
        "progress",
        "sample",
        "elicit",
        "roots",
        "log",
        "list_changed",
        "test_tool_with_logging",
        "test_tool_with_progress",
        "test_sampling",
        "test_elicitation",
        "test_elicitation_sep1034_defaults",
        "test_elicitation_sep1330_enums",
    ];
    let tool = msg
        .pointer("/params/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    // The 2026-07-28 conformance tools (`rounds`) ask the client too.
    let asks = tool.starts_with("test_input_required_result")
        || crate::rounds::tools()
            .iter()
            .any(|t| t["name"].as_str() == Some(tool));
    let streamed = match method.as_deref() {
        Some("tools/call") => INTERACTIVE.contains(&tool) || tool == "test_reconnection" || asks,
        Some("prompts/get") => asks,
        _ => false,
    };
    let reconnection =
        msg.pointer("/params/name").and_then(Value::as_str) == Some("test_reconnection");
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let seen: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let ctx = Ctx {
        out: tx.clone(),
        session,
        headers: Some(Value::Object(seen)),
    };
    if !streamed {
        let answer = handle(msg, ctx).await.unwrap_or(Value::Null);
        let mut resp = json_response(&answer);
        if let Ok(v) = sid.parse() {
            resp.headers_mut().insert("mcp-session-id", v);
        }
        return resp;
    }
    if reconnection {
        return close_early(sid, msg, ctx).await;
    }
    tokio::spawn(async move {
        if let Some(answer) = handle(msg, ctx).await {
            let _ = tx.send(answer);
        }
    });
    let stream = events(rx, true);
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    if let Ok(v) = sid.parse() {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

/// Messages as SSE events; with `until_answer`, the stream ends after the
/// first response (the answer to the request that opened it).
fn events(
    rx: mpsc::UnboundedReceiver<Value>,
    until_answer: bool,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((rx, false), move |(mut rx, done)| async move {
        if done {
            return None;
        }
        let v = rx.recv().await?;
        let last = until_answer && v.get("method").is_none();
        Some((Ok(Event::default().data(v.to_string())), (rx, last)))
    })
}

/// SEP-1699 polling: send a priming event (id + retry), close the stream at
/// once, and keep the answer for the client's `GET` with `Last-Event-ID`.
async fn close_early(sid: String, msg: Value, ctx: Ctx) -> Response {
    let event_id = format!("rc-{:x}", rand::random::<u64>());
    let session = ctx.session.clone();
    let key = event_id.clone();
    tokio::spawn(async move {
        if let Some(answer) = handle(msg, ctx).await {
            if let Ok(mut r) = session.replay.lock() {
                r.insert(key, answer);
            }
            session.replayed.notify_waiters();
        }
    });
    // Written by hand: the event must carry an empty `data:` line to be an event.
    let priming = format!("id: {event_id}\nretry: 200\ndata: \n\n");
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        priming,
    )
        .into_response();
    if let Ok(v) = sid.parse() {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

async fn on_get(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = foreign(&headers) {
        return r;
    }
    let Some(sid) = session_id(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    {
        let session = st
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(&sid).map(|e| e.session.clone()));
        let Some(session) = session else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if last.starts_with("rc-") {
            let answer = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let notified = session.replayed.notified();
                    if let Some(a) = session.replay.lock().ok().and_then(|mut r| r.remove(&last)) {
                        return a;
                    }
                    notified.await;
                }
            })
            .await;
            return match answer {
                Ok(a) => {
                    let ev = Event::default()
                        .id(format!("{last}-done"))
                        .data(a.to_string());
                    Sse::new(futures_util::stream::once(async move {
                        Ok::<_, Infallible>(ev)
                    }))
                    .into_response()
                }
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            };
        }
    }
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    {
        let Ok(mut m) = st.map.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(entry) = m.get_mut(&sid) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        entry.get_tx = Some(tx.clone());
        if let Ok(mut l) = entry.session.listener.lock() {
            *l = Some(tx);
        }
    }
    Sse::new(events(rx, false))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// For tests: how many sessions are open here.
async fn on_stats(State(st): State<Shared>) -> Response {
    let n = st.map.lock().map(|m| m.len()).unwrap_or(0);
    json_response(&serde_json::json!({"sessions": n}))
}

async fn on_delete(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let Some(sid) = session_id(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let removed = st.map.lock().ok().and_then(|mut m| m.remove(&sid));
    if removed.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response()
}
