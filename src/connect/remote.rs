//! The remote side: streamable HTTP (with legacy SSE as a fallback), carrying the
//! client's JSON-RPC messages unchanged and writing whatever the server says to
//! stdout, one message per line.

use super::trace::Traced;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::oauth::Auth;
use super::util::{Challenge, compact, parse_challenge};
use crate::jsonrpc::{Kind, Message, RequestId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// Streamable HTTP; legacy SSE if the server refuses the first POST.
    Auto,
    Streamable,
    /// Legacy HTTP+SSE (MCP 2024-11-05).
    Sse,
}

/// Without a `retry` field, wait this long before resuming a stream.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Resumption attempts of one stream that bring nothing before giving up.
const MAX_RESUMES: u32 = 5;

#[derive(Default)]
struct SessionState {
    session: Option<String>,
    /// The protocol version the server chose in its initialize answer.
    version: Option<String>,
    /// The client's initialize and initialized, replayed if the server forgets the session.
    init: Option<Message>,
    initialized: Option<Message>,
    /// Bumped on every new session, so a GET stream of an old one stops.
    generation: u64,
    get_running: bool,
}

pub struct Remote {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    pub auth: Arc<Auth>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    state: Mutex<SessionState>,
    reinit: tokio::sync::Mutex<()>,
    transport: TransportKind,
    legacy: OnceLock<Url>,
    legacy_starting: tokio::sync::Mutex<()>,
    pub shutdown: CancellationToken,
    /// Set when the bridge cannot go on (the legacy stream died): exit non-zero.
    pub failed: AtomicBool,
}

enum PostError {
    /// The server does not take POSTs here: maybe a legacy SSE server.
    NotStreamable(StatusCode),
    Other(String),
}

impl From<String> for PostError {
    fn from(s: String) -> Self {
        PostError::Other(s)
    }
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn challenge_of(resp: &reqwest::Response) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

fn is_sse(resp: &reqwest::Response) -> bool {
    header_str(resp, "content-type").is_some_and(|c| c.starts_with("text/event-stream"))
}

/// A short, single-line excerpt of an error body for a message.
async fn excerpt(resp: reqwest::Response) -> String {
    let body = resp.bytes().await.unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// Parse `--header "Name: value"` flags; values may be `env:VAR`.
pub fn parse_headers(flags: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for flag in flags {
        let (name, value) = flag.split_once(':').ok_or_else(|| {
            format!("--header {flag:?} is not \"Name: value\" (a colon separates the name from the value)")
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            format!(
                "--header {flag:?}: {:?} is not a valid header name",
                name.trim()
            )
        })?;
        let value = super::util::resolve_value(value.trim(), &format!("--header {name}"))?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            format!("--header {name}: the value has characters a header cannot carry")
        })?;
        map.append(name, value);
    }
    Ok(map)
}

impl Remote {
    pub fn new(
        url: Url,
        headers: HeaderMap,
        auth: Arc<Auth>,
        out: mpsc::UnboundedSender<Vec<u8>>,
        transport: TransportKind,
    ) -> Result<Remote, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Remote {
            http,
            url,
            headers,
            auth,
            out,
            state: Mutex::new(SessionState::default()),
            reinit: tokio::sync::Mutex::new(()),
            transport,
            legacy: OnceLock::new(),
            legacy_starting: tokio::sync::Mutex::new(()),
            shutdown: CancellationToken::new(),
            failed: AtomicBool::new(false),
        })
    }

    /// An Authorization header given with --header replaces sign-in.
    fn fixed_authorization(&self) -> bool {
        self.headers.contains_key(reqwest::header::AUTHORIZATION)
    }

    async fn bearer(&self) -> Result<Option<String>, String> {
        if self.fixed_authorization() {
            return Ok(None);
        }
        self.auth.bearer().await
    }

    async fn unauthorized(
        &self,
        sent: Option<&str>,
        resp: &reqwest::Response,
    ) -> Result<(), String> {
        if self.fixed_authorization() {
            return Err(format!(
                "{} refuses the Authorization header given with --header (401); check its value, or drop it to sign in instead",
                self.url
            ));
        }
        self.auth.unauthorized(sent, challenge_of(resp)).await
    }

    fn state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn emit(&self, raw: &[u8]) {
        let _ = self.out.send(compact(raw));
    }

    /// Send one client message; a request that cannot be delivered is answered
    /// with a JSON-RPC error so the client never waits forever.
    pub async fn send(self: &Arc<Self>, msg: Message) {
        if let Err(e) = self.deliver(&msg).await {
            eprintln!("mcpgate connect: {e}");
            if let Some(id) = msg.request_id() {
                let err = crate::jsonrpc::error_response(
                    Some(id),
                    crate::jsonrpc::code::INTERNAL_ERROR,
                    &format!("mcpgate connect: {e}"),
                    None,
                );
                self.emit(&err.raw);
            }
        }
    }

    async fn deliver(self: &Arc<Self>, msg: &Message) -> Result<(), String> {
        match msg.method() {
            Some("initialize") => self.state(|s| s.init = Some(msg.clone())),
            Some("notifications/initialized") => self.state(|s| s.initialized = Some(msg.clone())),
            _ => {}
        }
        if self.transport == TransportKind::Sse || self.legacy.get().is_some() {
            return self.legacy_post(msg).await;
        }
        match self.post(msg, true, true).await {
            Ok(()) => {}
            Err(PostError::NotStreamable(status)) if self.transport == TransportKind::Auto => {
                eprintln!(
                    "mcpgate connect: {} answered {status} to a POST; trying the legacy SSE transport",
                    self.url
                );
                self.start_legacy().await.map_err(|e| {
                    format!("{} is neither a streamable HTTP endpoint ({status} to POST) nor a legacy SSE one: {e}", self.url)
                })?;
                return self.legacy_post(msg).await;
            }
            Err(PostError::NotStreamable(status)) => {
                return Err(format!(
                    "{} answered {status} to the initialize POST; is it an MCP endpoint? (--transport sse for legacy SSE servers)",
                    self.url
                ));
            }
            Err(PostError::Other(e)) => return Err(e),
        }
        if msg.method() == Some("notifications/initialized") {
            self.open_get_stream().await;
        }
        Ok(())
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let (session, version) = self.state(|s| (s.session.clone(), s.version.clone()));
        let mut req = self.http.request(method, url.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        // Last, so that a user's own Authorization header wins.
        req.headers(self.headers.clone())
    }

    /// POST one message. `forward`: whether the answer goes to stdout (not for a
    /// replayed initialize, whose answer the client already has).
    async fn post(
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
                .map_err(|e| format!("cannot reach {} ({what}): {e}", self.url))?;
            let status = resp.status();
            match status.as_u16() {
                401 => {
                    auth_rounds += 1;
                    if auth_rounds > 2 {
                        return Err(format!("{} still answers 401 to {what} after signing in again; giving up on this request", self.url).into());
                    }
                    self.unauthorized(token.as_deref(), &resp).await?;
                }
                403 => {
                    let ch = challenge_of(&resp).unwrap_or_default();
                    if ch.error.as_deref() != Some("insufficient_scope")
                        || auth_rounds >= 3
                        || self.fixed_authorization()
                    {
                        return Err(format!(
                            "{} refuses {what} (403): {}",
                            self.url,
                            excerpt(resp).await
                        )
                        .into());
                    }
                    auth_rounds += 1;
                    self.auth.step_up(token.as_deref(), ch).await?;
                }
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
                    return Err(format!(
                        "{} answered {status} to {what}: {}",
                        self.url,
                        excerpt(resp).await
                    )
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
    ) -> Result<(), String> {
        if resp.status() == StatusCode::ACCEPTED || !is_sse(&resp) {
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("reading the answer of {}: {e}", self.url))?;
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
                return Err(format!(
                    "{} closed the answer stream of a request without answering it, and gave no event id to resume from",
                    self.url
                ));
            };
            idle += 1;
            if idle > MAX_RESUMES {
                return Err(format!(
                    "{} did not answer a request after {MAX_RESUMES} attempts to resume its stream",
                    self.url
                ));
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
                    return Err(format!(
                        "{} refused to resume an answer stream ({}): {}",
                        self.url,
                        r.status(),
                        excerpt(r).await
                    ));
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
    async fn reinitialize(self: &Arc<Self>, stale: Option<String>) -> Result<(), String> {
        let _one = self.reinit.lock().await;
        if self.state(|s| s.session != stale) {
            return Ok(()); // another request did it already
        }
        let (init, initialized) = self.state(|s| (s.init.clone(), s.initialized.clone()));
        let init = init.ok_or_else(|| {
            format!(
                "{} forgot the session, and the client's initialize is not known to replay",
                self.url
            )
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
            Err(PostError::NotStreamable(s)) => {
                return Err(format!("{} refused a new session ({s})", self.url));
            }
            Err(PostError::Other(e)) => return Err(e),
        }
        if let Some(n) = initialized {
            match Box::pin(self.post(&n, true, false)).await {
                Ok(()) => {}
                Err(PostError::NotStreamable(s)) => {
                    return Err(format!("{} refused initialized ({s})", self.url));
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
    async fn open_get_stream(self: &Arc<Self>) {
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

    /// Legacy SSE: GET the stream, wait for the `endpoint` event, forward messages.
    async fn start_legacy(self: &Arc<Self>) -> Result<(), String> {
        let _one = self.legacy_starting.lock().await;
        if self.legacy.get().is_some() {
            return Ok(());
        }
        let mut auth_rounds = 0;
        let resp = loop {
            let token = self.bearer().await?;
            let resp = self
                .request(reqwest::Method::GET, &self.url, token.as_deref())
                .header("accept", "text/event-stream")
                .traced("mcp.sse")
                .await
                .map_err(|e| format!("cannot reach {}: {e}", self.url))?;
            if resp.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                self.unauthorized(token.as_deref(), &resp).await?;
                continue;
            }
            if !resp.status().is_success() || !is_sse(&resp) {
                return Err(format!(
                    "GET answered {} without an event stream",
                    resp.status()
                ));
            }
            break resp;
        };
        let (tx, rx) = oneshot::channel::<String>();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut events = resp.bytes_stream().eventsource();
            loop {
                let next = tokio::select! {
                    e = events.next() => e,
                    _ = this.shutdown.cancelled() => return,
                };
                let Some(Ok(ev)) = next else { break };
                if ev.event == "endpoint" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(ev.data.trim().to_string());
                    }
                } else if !ev.data.trim().is_empty() {
                    this.emit(ev.data.as_bytes());
                }
            }
            // Legacy SSE cannot resume: the session is gone with the stream.
            eprintln!(
                "mcpgate connect: the legacy SSE stream of {} ended; stopping",
                this.url
            );
            this.failed.store(true, Ordering::SeqCst);
            this.shutdown.cancel();
        });
        let endpoint = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| "no endpoint event within 30s".to_string())?
            .map_err(|_| "the stream ended before its endpoint event".to_string())?;
        let endpoint = self
            .url
            .join(&endpoint)
            .map_err(|e| format!("the endpoint event {endpoint:?} is not a URL: {e}"))?;
        if endpoint.origin() != self.url.origin() {
            return Err(format!(
                "the endpoint event points to {endpoint}, another origin than {}; refusing to send messages (and tokens) there",
                self.url
            ));
        }
        let _ = self.legacy.set(endpoint);
        Ok(())
    }

    async fn legacy_post(self: &Arc<Self>, msg: &Message) -> Result<(), String> {
        if self.legacy.get().is_none() {
            self.start_legacy().await?;
        }
        let endpoint = self
            .legacy
            .get()
            .cloned()
            .ok_or_else(|| "the legacy SSE endpoint is unknown".to_string())?;
        let mut auth_rounds = 0;
        loop {
            let token = self.bearer().await?;
            let mut req = self.http.post(endpoint.clone());
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .headers(self.headers.clone())
                .header("content-type", "application/json")
                .body(msg.raw.clone())
                .traced("mcp.sse.post")
                .await
                .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
            if resp.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                self.unauthorized(token.as_deref(), &resp).await?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(format!(
                    "{endpoint} answered {}: {}",
                    resp.status(),
                    excerpt(resp).await
                ));
            }
            return Ok(());
        }
    }

    /// End the remote session (DELETE), as the spec asks of a client that leaves.
    pub async fn close(&self) {
        let Some(session) = self.state(|s| s.session.take()) else {
            return;
        };
        let token = if self.fixed_authorization() {
            None
        } else {
            self.auth.bearer_cached()
        };
        let mut req = self
            .http
            .delete(self.url.clone())
            .header("mcp-session-id", session);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let req = req.headers(self.headers.clone());
        match tokio::time::timeout(Duration::from_secs(5), req.traced("mcp.delete")).await {
            Ok(Ok(r))
                if r.status().is_success() || r.status() == StatusCode::METHOD_NOT_ALLOWED => {}
            Ok(Ok(r)) => eprintln!(
                "mcpgate connect: ending the session at {} answered {}",
                self.url,
                r.status()
            ),
            Ok(Err(e)) => eprintln!("mcpgate connect: ending the session at {}: {e}", self.url),
            Err(_) => eprintln!(
                "mcpgate connect: ending the session at {} timed out",
                self.url
            ),
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
