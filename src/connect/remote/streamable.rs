//! Streamable HTTP (MCP 2025-03-26 and later): each message POSTed, its answer
//! read as JSON or as an SSE stream resumed with `Last-Event-ID`, the GET
//! stream of server-initiated messages, and a new session (the client's
//! initialize replayed) when the server forgets the old one. Bounded: two
//! sign-in rounds per request, five resumptions without progress.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;

use super::{PostError, Remote, RemoteError, excerpt, header_str, is_sse};
use crate::connect::trace::Traced;
use crate::jsonrpc::{Kind, Message, RequestId};

/// Without a `retry` field, wait this long before resuming a stream.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Resumption attempts of one stream that bring nothing before giving up.
const MAX_RESUMES: u32 = 5;

impl Remote {
    /// POST one message. `forward`: whether the answer goes to stdout (not for a
    /// replayed initialize, whose answer the client already has).
    pub(super) async fn post(
        self: &Arc<Self>,
        msg: &Message,
        forward: bool,
        may_reinit: bool,
    ) -> Result<(), PostError> {
        let is_init = msg.method() == Some("initialize");
        let what = msg.method().unwrap_or("a response");
        let mut auth_rounds = 0;
        let mut reinitialized = false;
        loop {
            let token = self.bearer().await?;
            let session = self.state(|s| s.session.clone());
            let resp = self
                .request(reqwest::Method::POST, &self.url, token.as_deref())
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(msg.raw.clone())
                .traced("mcp.post")
                .await
                .map_err(|source| RemoteError::Unreachable {
                    url: self.url.to_string(),
                    what: what.to_string(),
                    source,
                })?;
            let Some(resp) = self
                .auth_refusal(resp, token.as_deref(), what, &mut auth_rounds)
                .await?
            else {
                continue;
            };
            let status = resp.status();
            match status.as_u16() {
                404 if session.is_some() && !is_init && may_reinit && !reinitialized => {
                    reinitialized = true;
                    self.reinitialize(session).await?;
                }
                400 | 404 | 405 if is_init && session.is_none() => {
                    return Err(PostError::NotStreamable(status));
                }
                _ if status.is_success() => {
                    if token.is_some() {
                        self.auth.accepted();
                    }
                    if is_init {
                        let sid = header_str(&resp, "mcp-session-id");
                        self.state(|s| {
                            s.session = sid;
                            s.generation += 1;
                            s.get_running = false;
                        });
                    }
                    return self
                        .answer(resp, msg.request_id().cloned(), is_init, forward)
                        .await
                        .map_err(PostError::Other);
                }
                _ => {
                    return Err(RemoteError::Status {
                        url: self.url.to_string(),
                        status,
                        what: what.to_string(),
                        body: excerpt(resp, token.as_deref()).await,
                    }
                    .into());
                }
            }
        }
    }

    /// Read the answer to a POST: JSON, or an SSE stream resumed with
    /// `Last-Event-ID` until the response to `wanted` arrives.
    async fn answer(
        self: &Arc<Self>,
        resp: reqwest::Response,
        wanted: Option<RequestId>,
        is_init: bool,
        forward: bool,
    ) -> Result<(), RemoteError> {
        if resp.status() == StatusCode::ACCEPTED || !is_sse(&resp) {
            let body = resp
                .bytes()
                .await
                .map_err(|source| RemoteError::ReadAnswer {
                    url: self.url.to_string(),
                    source,
                })?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            self.seen(&body, wanted.as_ref(), is_init, forward);
            return Ok(());
        }
        let mut cursor = StreamCursor::default();
        let mut answered = self
            .read_events(resp, &mut cursor, wanted.as_ref(), is_init, forward)
            .await;
        let Some(wanted) = wanted else { return Ok(()) };
        let mut idle = 0;
        while !answered {
            let Some(last) = cursor.last_id.clone() else {
                return Err(RemoteError::NoResumeId {
                    url: self.url.to_string(),
                });
            };
            idle += 1;
            if idle > MAX_RESUMES {
                return Err(RemoteError::ResumeGaveUp {
                    url: self.url.to_string(),
                    attempts: MAX_RESUMES,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(cursor.retry) => {}
                _ = self.shutdown.cancelled() => return Ok(()),
            }
            let token = self.bearer().await?;
            let resp = self
                .request(reqwest::Method::GET, &self.url, token.as_deref())
                .header("accept", "text/event-stream")
                .header("last-event-id", &last)
                .traced("mcp.get")
                .await;
            match resp {
                Ok(r) if r.status().is_success() && is_sse(&r) => {
                    let before = cursor.events;
                    answered = self
                        .read_events(r, &mut cursor, Some(&wanted), is_init, forward)
                        .await;
                    if cursor.events > before {
                        idle = 0;
                    }
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    self.unauthorized(token.as_deref(), &r).await?;
                }
                Ok(r) => {
                    return Err(RemoteError::ResumeRefused {
                        url: self.url.to_string(),
                        status: r.status(),
                        body: excerpt(r, token.as_deref()).await,
                    });
                }
                Err(e) => eprintln!("mcpgate connect: resuming a stream of {}: {e}", self.url),
            }
        }
        Ok(())
    }

    /// Forward one JSON(-RPC) body; returns whether it is the response to `wanted`.
    fn seen(&self, data: &[u8], wanted: Option<&RequestId>, is_init: bool, forward: bool) -> bool {
        let mine = match Message::parse(Bytes::copy_from_slice(data)) {
            Ok(m) => match (&m.kind, wanted) {
                (Kind::Response { id: Some(id) }, Some(w)) if id == w => {
                    if is_init {
                        #[derive(serde::Deserialize)]
                        struct Init {
                            result: Option<InitResult>,
                        }
                        #[derive(serde::Deserialize)]
                        struct InitResult {
                            #[serde(rename = "protocolVersion")]
                            protocol_version: Option<String>,
                        }
                        let v = serde_json::from_slice::<Init>(data)
                            .ok()
                            .and_then(|i| i.result?.protocol_version);
                        self.state(|s| s.version = v);
                    }
                    true
                }
                _ => false,
            },
            // A batch answer, or something the client may still understand.
            Err(_) => false,
        };
        if forward || !mine {
            self.emit(data);
        }
        mine
    }

    async fn read_events(
        &self,
        resp: reqwest::Response,
        cursor: &mut StreamCursor,
        wanted: Option<&RequestId>,
        is_init: bool,
        forward: bool,
    ) -> bool {
        let mut answered = false;
        let mut events = resp.bytes_stream().eventsource();
        loop {
            let next = tokio::select! {
                e = events.next() => e,
                _ = self.shutdown.cancelled() => return true,
            };
            let Some(Ok(ev)) = next else { break };
            cursor.events += 1;
            if !ev.id.is_empty() {
                cursor.last_id = Some(ev.id.clone());
            }
            if let Some(r) = ev.retry {
                cursor.retry = r;
            }
            if ev.data.trim().is_empty() {
                continue; // priming event
            }
            answered |= self.seen(ev.data.as_bytes(), wanted, is_init, forward);
        }
        answered
    }

    /// The server forgot the session (404): start a new one by replaying the
    /// client's initialize, so the client never notices.
    async fn reinitialize(self: &Arc<Self>, stale: Option<String>) -> Result<(), RemoteError> {
        let _one = self.reinit.lock().await;
        if self.state(|s| s.session != stale) {
            return Ok(()); // another request did it already
        }
        let (init, initialized) = self.state(|s| (s.init.clone(), s.initialized.clone()));
        let init = init.ok_or_else(|| RemoteError::NothingToReplay {
            url: self.url.to_string(),
        })?;
        eprintln!(
            "mcpgate connect: {} ended the session; starting a new one",
            self.url
        );
        self.state(|s| {
            s.session = None;
            s.version = None;
        });
        match Box::pin(self.post(&init, false, false)).await {
            Ok(()) => {}
            Err(PostError::NotStreamable(status)) => {
                return Err(RemoteError::NewSessionRefused {
                    url: self.url.to_string(),
                    status,
                });
            }
            Err(PostError::Other(e)) => return Err(e),
        }
        if let Some(n) = initialized {
            match Box::pin(self.post(&n, true, false)).await {
                Ok(()) => {}
                Err(PostError::NotStreamable(status)) => {
                    return Err(RemoteError::InitializedRefused {
                        url: self.url.to_string(),
                        status,
                    });
                }
                Err(PostError::Other(e)) => return Err(e),
            }
            self.open_get_stream().await;
        }
        Ok(())
    }

    /// Open the GET stream and wait (briefly) until the server has answered it:
    /// a server sends requests that belong to no client request (elicitation,
    /// sampling) on that stream and drops them when it is not open yet, so the
    /// client's next request must not go out before it is.
    pub(super) async fn open_get_stream(self: &Arc<Self>) {
        if let Some(ready) = self.ensure_get_stream() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ready).await;
        }
    }

    /// The GET stream of server-initiated messages, once per session.
    fn ensure_get_stream(self: &Arc<Self>) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let generation = self.state(|s| {
            if s.get_running || s.session.is_none() {
                None
            } else {
                s.get_running = true;
                Some(s.generation)
            }
        })?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let this = Arc::clone(self);
        tokio::spawn(async move { this.get_stream(generation, ready_tx).await });
        Some(ready_rx)
    }

    async fn get_stream(self: Arc<Self>, generation: u64, ready: tokio::sync::oneshot::Sender<()>) {
        // Dropped (so the waiter goes on) on every way out of this function.
        let mut ready = Some(ready);
        let mut cursor = StreamCursor::default();
        let mut failures = 0u32;
        loop {
            if self.shutdown.is_cancelled() || self.state(|s| s.generation != generation) {
                return;
            }
            let token = match self.bearer().await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("mcpgate connect: the server-message stream stops: {e}");
                    return;
                }
            };
            let mut req = self
                .request(reqwest::Method::GET, &self.url, token.as_deref())
                .header("accept", "text/event-stream");
            if let Some(last) = &cursor.last_id {
                req = req.header("last-event-id", last);
            }
            let resp = tokio::select! {
                r = req.traced("mcp.get") => r,
                _ = self.shutdown.cancelled() => return,
            };
            // Answered (stream open, or refused): the client may go on.
            if let Some(tx) = ready.take() {
                let _ = tx.send(());
            }
            match resp {
                Ok(r) if r.status().is_success() && is_sse(&r) => {
                    let before = cursor.events;
                    self.read_events(r, &mut cursor, None, false, true).await;
                    if cursor.events > before {
                        failures = 0;
                    } else {
                        failures += 1;
                    }
                }
                // 405: the server offers no such stream, which is allowed.
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                Ok(r) if r.status() == StatusCode::NOT_FOUND => return,
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    failures += 1;
                    if let Err(e) = self.unauthorized(token.as_deref(), &r).await {
                        eprintln!("mcpgate connect: the server-message stream stops: {e}");
                        return;
                    }
                }
                Ok(r) => {
                    failures += 1;
                    eprintln!(
                        "mcpgate connect: the server-message stream of {} answered {}",
                        self.url,
                        r.status()
                    );
                }
                Err(e) => {
                    failures += 1;
                    eprintln!(
                        "mcpgate connect: the server-message stream of {}: {e}",
                        self.url
                    );
                }
            }
            if failures >= MAX_RESUMES {
                eprintln!(
                    "mcpgate connect: giving up on the server-message stream of {} (requests still work)",
                    self.url
                );
                self.state(|s| {
                    if s.generation == generation {
                        s.get_running = false;
                    }
                });
                return;
            }
            let wait = cursor.retry * failures.max(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }
}

struct StreamCursor {
    last_id: Option<String>,
    retry: Duration,
    events: u64,
}

impl Default for StreamCursor {
    fn default() -> Self {
        StreamCursor {
            last_id: None,
            retry: DEFAULT_RETRY,
            events: 0,
        }
    }
}
