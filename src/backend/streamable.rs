//! Streamable HTTP backend (MCP 2025-03-26 and later).
//!
//! The gateway session maps to one backend session (`Mcp-Session-Id` captured from
//! the `initialize` answer). Each client request is one POST; whatever the server
//! streams back on it is tagged with that request, so progress and server requests
//! reach the client on the right stream. The backend's GET stream is relayed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{BackendError, InboxRef, body_excerpt, header_map};
use crate::config::ServiceName;
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::service::Service;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

pub struct HttpBackend {
    inner: Arc<Inner>,
}

/// Where to resume an SSE stream from, and how long to wait first.
struct Cursor {
    last_event_id: Option<String>,
    retry: Duration,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor {
            last_event_id: None,
            retry: Duration::from_millis(500),
        }
    }
}

enum StreamEnd {
    /// The server ended the stream (resume it if possible).
    Ended,
    /// The handler had what it wanted.
    Stopped,
    /// The session is closing.
    Cancelled,
}

struct Inner {
    service: ServiceName,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    session_id: RwLock<Option<HeaderValue>>,
    protocol_version: RwLock<Option<HeaderValue>>,
    inbox: InboxRef,
    cancel: CancellationToken,
    get_started: AtomicBool,
}

impl HttpBackend {
    pub fn new(
        service: &Arc<Service>,
        url: Url,
        headers: &BTreeMap<String, String>,
        inbox: InboxRef,
    ) -> Result<HttpBackend, BackendError> {
        Ok(HttpBackend {
            inner: Arc::new(Inner {
                service: service.name.clone(),
                client: service.http.clone(),
                url,
                headers: header_map(headers)?,
                session_id: RwLock::new(None),
                protocol_version: RwLock::new(None),
                inbox,
                cancel: CancellationToken::new(),
                get_started: AtomicBool::new(false),
            }),
        })
    }

    pub async fn send(&self, msg: Message) {
        let inner = self.inner.clone();
        match &msg.kind {
            Kind::Request { .. } => {
                // A request's answer may take minutes: never hold up the caller.
                tokio::spawn(async move { inner.post_request(msg).await });
            }
            Kind::Notification { .. } | Kind::Response { .. } => inner.post_other(msg).await,
        }
    }

    /// The client opened its GET stream: open ours to the server and relay it.
    /// Only then, as the client would have: an idle session without one costs no
    /// connection to the server.
    pub fn client_listens(&self) {
        if !self.inner.get_started.swap(true, Ordering::AcqRel) {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.relay_get_stream().await });
        }
    }

    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let session = self.inner.session_id.read().ok().and_then(|s| s.clone());
        if let Some(sid) = session {
            let req = self
                .inner
                .client
                .delete(self.inner.url.clone())
                .headers(self.inner.headers.clone())
                .header(SESSION_HEADER, sid)
                .timeout(Duration::from_secs(5));
            if let Err(e) = req.send().await {
                tracing::debug!(service = %self.inner.service, "DELETE of the backend session failed: {e}");
            }
        }
    }
}

impl Inner {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, self.url.clone())
            .headers(self.headers.clone());
        if let Some(sid) = self.session_id.read().ok().and_then(|s| s.clone()) {
            req = req.header(SESSION_HEADER, sid);
        }
        if let Some(v) = self.protocol_version.read().ok().and_then(|s| s.clone()) {
            req = req.header(VERSION_HEADER, v);
        }
        req
    }

    fn post(&self, msg: &Message) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(msg.raw.clone())
    }

    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        if let Some(inbox) = self.inbox.upgrade() {
            inbox.deliver(msg, related);
        }
    }

    fn fail(&self, id: &RequestId, message: String) {
        self.deliver(
            jsonrpc::error_response(Some(id), code::BACKEND_UNAVAILABLE, &message, None),
            Some(id.clone()),
        );
    }

    async fn post_request(self: Arc<Self>, msg: Message) {
        let Kind::Request { id, method } = &msg.kind else {
            return;
        };
        let (id, is_init) = (id.clone(), &**method == "initialize");
        let resp = tokio::select! {
            r = self.post(&msg).send() => r,
            () = self.cancel.cancelled() => return,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return self.fail(
                    &id,
                    format!(
                        "service {:?} is unreachable: {}",
                        self.service.as_str(),
                        error_chain(&e)
                    ),
                );
            }
        };
        let status = resp.status();
        if is_init
            && let Some(sid) = resp.headers().get(SESSION_HEADER)
            && let Ok(mut slot) = self.session_id.write()
        {
            *slot = Some(sid.clone());
        }
        if status == reqwest::StatusCode::NOT_FOUND && !is_init {
            if let Some(inbox) = self.inbox.upgrade() {
                inbox.backend_closed(format!(
                    "service {:?} no longer knows this session (HTTP 404)",
                    self.service.as_str()
                ));
            }
            return;
        }
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return self.fail(
                &id,
                format!(
                    "service {:?} answered HTTP {}{}",
                    self.service.as_str(),
                    status.as_u16(),
                    body_excerpt(&body)
                ),
            );
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            self.read_response_stream(resp, id).await;
        } else if status == reqwest::StatusCode::ACCEPTED {
            self.fail(
                &id,
                format!(
                    "service {:?} accepted the request but sent no answer",
                    self.service.as_str()
                ),
            );
        } else {
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return self.fail(
                        &id,
                        format!(
                            "service {:?}: reading the answer failed: {e}",
                            self.service.as_str()
                        ),
                    );
                }
            };
            match jsonrpc::parse_body(&body) {
                Ok(incoming) => {
                    for m in incoming.messages {
                        if is_init {
                            self.note_version(&m);
                        }
                        self.deliver(m, Some(id.clone()));
                    }
                }
                Err(e) => self.fail(
                    &id,
                    format!(
                        "service {:?} sent an answer that is not JSON-RPC: {}",
                        self.service.as_str(),
                        e.message()
                    ),
                ),
            }
        }
    }

    /// Read an SSE answer to one request; resume with `Last-Event-ID` if the
    /// server closes the stream before the answer (2025-11-25 polling).
    async fn read_response_stream(&self, resp: reqwest::Response, id: RequestId) {
        let mut cursor = Cursor::default();
        let mut resp = resp;
        for _attempt in 0..100 {
            let outcome = self
                .read_events(resp, &mut cursor, |m| {
                    let answered = matches!(&m.kind, Kind::Response { id: Some(r) } if *r == id);
                    if answered {
                        self.note_version(&m);
                    }
                    self.deliver(m, Some(id.clone()));
                    answered
                })
                .await;
            match outcome {
                StreamEnd::Stopped | StreamEnd::Cancelled => return,
                StreamEnd::Ended => {}
            }
            let Some(resume_from) = cursor.last_event_id.clone() else {
                break;
            };
            tokio::select! {
                () = tokio::time::sleep(cursor.retry) => {},
                () = self.cancel.cancelled() => return,
            }
            match self
                .request(reqwest::Method::GET)
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", resume_from)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => resp = r,
                _ => break,
            }
        }
        self.fail(
            &id,
            format!(
                "service {:?} closed the stream before answering",
                self.service.as_str()
            ),
        );
    }

    /// Hand every message of an SSE body to `on_message` (which returns true to
    /// stop), keeping track of the event id and retry delay for resumption.
    async fn read_events(
        &self,
        resp: reqwest::Response,
        cursor: &mut Cursor,
        mut on_message: impl FnMut(Message) -> bool,
    ) -> StreamEnd {
        let mut events = resp.bytes_stream().eventsource();
        loop {
            let next = tokio::select! {
                e = events.next() => e,
                () = self.cancel.cancelled() => return StreamEnd::Cancelled,
            };
            let Some(Ok(ev)) = next else {
                return StreamEnd::Ended;
            };
            if !ev.id.is_empty() {
                cursor.last_event_id = Some(ev.id.clone());
            }
            if let Some(r) = ev.retry {
                cursor.retry = r;
            }
            if ev.data.trim().is_empty() {
                continue;
            }
            match Message::parse(Bytes::from(ev.data)) {
                Ok(m) => {
                    if on_message(m) {
                        return StreamEnd::Stopped;
                    }
                }
                Err(e) => {
                    tracing::warn!(service = %self.service, "ignored an SSE event that is not JSON-RPC: {}", e.message())
                }
            }
        }
    }

    /// Remember the negotiated version: later requests must carry it as a header.
    fn note_version(&self, msg: &Message) {
        #[derive(serde::Deserialize)]
        struct R {
            result: Option<V>,
        }
        #[derive(serde::Deserialize)]
        struct V {
            #[serde(rename = "protocolVersion")]
            protocol_version: Option<String>,
        }
        if let Ok(R {
            result: Some(V {
                protocol_version: Some(v),
            }),
        }) = serde_json::from_slice::<R>(&msg.raw)
            && let Ok(hv) = HeaderValue::from_str(&v)
            && let Ok(mut slot) = self.protocol_version.write()
        {
            *slot = Some(hv);
        }
    }

    async fn post_other(&self, msg: Message) {
        let resp = tokio::select! {
            r = self.post(&msg).send() => r,
            () = self.cancel.cancelled() => return,
        };
        match resp {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                if let Some(inbox) = self.inbox.upgrade() {
                    inbox.backend_closed(format!(
                        "service {:?} no longer knows this session (HTTP 404)",
                        self.service.as_str()
                    ));
                }
            }
            Ok(r) => tracing::warn!(
                service = %self.service,
                status = r.status().as_u16(),
                method = msg.method().unwrap_or("(response)"),
                "the service refused a message"
            ),
            Err(e) => {
                tracing::warn!(service = %self.service, "sending to the service failed: {}", error_chain(&e))
            }
        }
    }

    /// Relay the server's GET stream (server-initiated messages), reconnecting
    /// with `Last-Event-ID` until the session ends. 405 means the server has none.
    async fn relay_get_stream(self: Arc<Self>) {
        let mut cursor = Cursor::default();
        let mut backoff = Duration::from_millis(500);
        while !self.cancel.is_cancelled() {
            let mut req = self
                .request(reqwest::Method::GET)
                .header(ACCEPT, "text/event-stream");
            if let Some(id) = &cursor.last_event_id {
                req = req.header("last-event-id", id.clone());
            }
            let resp = tokio::select! {
                r = req.send() => r,
                () = self.cancel.cancelled() => return,
            };
            match resp {
                Ok(r) if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => return,
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    if let Some(inbox) = self.inbox.upgrade() {
                        inbox.backend_closed(format!(
                            "service {:?} no longer knows this session (HTTP 404)",
                            self.service.as_str()
                        ));
                    }
                    return;
                }
                Ok(r) if r.status().is_success() => {
                    cursor.retry = Duration::from_millis(500);
                    let end = self
                        .read_events(r, &mut cursor, |m| {
                            self.deliver(m, None);
                            false
                        })
                        .await;
                    if matches!(end, StreamEnd::Cancelled) {
                        return;
                    }
                    backoff = cursor.retry;
                }
                Ok(r) => {
                    tracing::debug!(service = %self.service, status = r.status().as_u16(), "GET stream refused");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::debug!(service = %self.service, "GET stream failed: {}", error_chain(&e));
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = self.cancel.cancelled() => return,
            }
        }
    }
}

/// reqwest errors hide the useful part (e.g. "connection refused") in their
/// sources, and their own text names the URL, which may carry credentials.
pub(super) fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![
        if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the response body failed"
        } else {
            "the request failed"
        }
        .to_string(),
    ];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}
