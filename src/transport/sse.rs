//! Legacy HTTP+SSE towards clients (MCP 2024-11-05): `GET /<service>/sse` opens
//! the session and its one stream, whose first event names the endpoint the client
//! POSTs its messages to. The session lives as long as that stream.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::stream;
use serde::Deserialize;

use super::pipeline::{Client, open_session};
use super::streamable::read_jsonrpc;
use super::{AppState, reply};
use crate::jsonrpc::code;
use crate::session::{Session, SubmitError};

pub async fn connect(State(gw): State<Arc<AppState>>, client: Client) -> Response {
    let svc = client.service.clone();
    let session = match open_session(&gw, &client, true, None).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let receiver = session.open_legacy_stream();
    let endpoint = format!(
        "{}{}?sessionId={}",
        gw.settings.base_path(),
        crate::config::endpoint_path(svc.name.as_str(), "message"),
        session.id.as_str()
    );
    // The session ends when the client goes away: there is no way back to it.
    let guard = CloseOnDrop(Some(session));
    let head = vec![reply::sse_event(
        None,
        Some("endpoint"),
        None,
        endpoint.as_bytes(),
    )];
    let tail = stream::unfold((receiver.rx, guard), |(mut rx, guard)| async move {
        let item = rx.recv().await?;
        let ev = reply::sse_event(None, Some("message"), None, &item.data);
        Some((ev, (rx, guard)))
    });
    reply::sse(head, tail)
}

struct CloseOnDrop(Option<Arc<Session>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take()
            && !s.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { s.close("the client disconnected").await });
        }
    }
}

#[derive(Deserialize)]
pub struct MessageQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

pub async fn message(
    State(gw): State<Arc<AppState>>,
    client: Client,
    Query(q): Query<MessageQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let svc = client.service.clone();
    let Some(sid) = q.session_id else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: the sessionId query parameter is required (use the endpoint URL from the SSE stream)",
        );
    };
    let Some(session) = gw
        .sessions
        .get(&sid, &svc.name, client.owner())
        .filter(|s| s.legacy)
    else {
        return reply::unknown_session();
    };
    let incoming = match read_jsonrpc(&headers, body, gw.settings.max_body_bytes).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    match session.submit(incoming.messages).await {
        Ok(_) => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Body::from("Accepted"))
            .unwrap_or_default(),
        Err(SubmitError::Closed) => reply::unknown_session(),
        Err(e) => reply::error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            &e.to_string(),
        ),
    }
}
