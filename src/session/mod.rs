//! Sessions: one client session bound to one backend, and the routing of every
//! message between them.
//!
//! A session owns *streams*: the SSE (or JSON) answer of each client POST, the GET
//! stream, or the single legacy SSE stream. Each backend message is routed to one
//! stream: a response to the stream of its request; a progress notification to the
//! stream of the request that asked for progress; anything else to the stream of
//! the request the backend says it belongs to, else the GET stream, else an open
//! POST stream (so a client without a GET stream still sees sampling requests),
//! else it waits for the next GET stream. Every SSE event is logged (bounded) so a
//! client can resume any stream with `Last-Event-ID`.

mod audit;
mod id;
mod registry;
mod streams;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

pub use audit::Forwarded;
use audit::{Audit, outcome};
pub use id::SessionId;
pub use registry::{Registry, Reservation};
use streams::*;

use crate::backend::{Inbox, InboxRef};
use crate::caller::Caller;
use crate::caller::UserId;
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::route::{Route, RouteError, Routes};
use crate::service::Service;

/// One message on its way to the client.
#[derive(Debug)]
pub struct Outgoing {
    pub event_id: Arc<str>,
    pub data: Bytes,
    pub is_response: bool,
    /// The stream has nothing more to say after this.
    pub last: bool,
}

/// The receiving end of one stream, handed to the HTTP layer.
pub struct StreamReceiver {
    pub rx: mpsc::Receiver<Outgoing>,
    /// Event id to send first with empty data (2025-11-25 priming), if any.
    pub priming_id: Option<String>,
}

struct Pending {
    stream: u64,
    method: Box<str>,
    deadline: Instant,
    timeout: Duration,
    progress: Option<String>,
    /// For `tools/call`, `resources/read` and `prompts/get`: what the audit record needs.
    audit: Option<Box<Audit>>,
}

#[derive(Default)]
struct State {
    pending: HashMap<RequestId, Pending>,
    progress: HashMap<String, RequestId>,
    streams: HashMap<u64, Slot>,
    get_stream: Option<u64>,
    next_stream: u64,
    log: VecDeque<Logged>,
    log_bytes: usize,
    undelivered: VecDeque<Bytes>,
    version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "service {service:?} has reached its limit of {max} open sessions (maxSessions); close unused sessions or raise the limit"
    )]
    Limit { service: String, max: usize },
    #[error("service {service:?} could not start: {source}")]
    Start { service: String, source: RouteError },
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the session is closed")]
    Closed,
    #[error("request id {0} is already in use by another request in flight on this session")]
    DuplicateId(RequestId),
}

pub struct Session {
    pub id: SessionId,
    pub service: Arc<Service>,
    pub legacy: bool,
    /// The signed-in person who opened it (with `proxy.auth`). Only they can use
    /// its id; to anyone else it is an unknown session.
    pub owner: Option<UserId>,
    /// Who opened it, as the edge verified them (`None` without `proxy.auth`).
    pub caller: Option<Arc<Caller>>,
    /// When the person's upstream token its backend was started with expires:
    /// the session ends shortly before, so the client re-initializes and the new
    /// session starts with a fresh token (never sending an expired one).
    token_deadline: OnceLock<Instant>,
    me: Weak<Session>,
    registry: Arc<Registry>,
    route: OnceLock<Route>,
    state: Mutex<State>,
    closing: AtomicBool,
    created: Instant,
    last_activity_ms: AtomicU64,
    /// Set for a session the gateway keeps for 2026-07-28 clients (`stateless`):
    /// notifications that belong to no request (list changes, resource updates)
    /// go here, to whoever listens (`subscriptions/listen`), instead of to a
    /// GET stream such sessions never have.
    /// Taken when the session ends, which ends every listener's stream.
    notices: Mutex<Option<tokio::sync::broadcast::Sender<Bytes>>>,
}

impl Session {
    /// Open a session: take a slot, start its backend, register it.
    pub async fn open(
        service: Arc<Service>,
        registry: Arc<Registry>,
        legacy: bool,
        routes: &Arc<Routes>,
        caller: Option<Arc<Caller>>,
    ) -> Result<Arc<Session>, OpenError> {
        let max = service.limits.max_sessions;
        if !service.stats.try_open_session(max) {
            return Err(OpenError::Limit {
                service: service.name.to_string(),
                max,
            });
        }
        let session = Arc::new_cyclic(|me| Session {
            id: SessionId::generate(),
            service: service.clone(),
            legacy,
            owner: caller.as_ref().map(|c| c.user.clone()),
            caller: caller.clone(),
            token_deadline: OnceLock::new(),
            me: me.clone(),
            registry: registry.clone(),
            route: OnceLock::new(),
            state: Mutex::new(State::default()),
            closing: AtomicBool::new(false),
            created: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            notices: Mutex::new(None),
        });
        let inbox: InboxRef = Arc::downgrade(&session) as Weak<dyn Inbox>;
        match routes.connect(&service, caller.as_ref(), inbox).await {
            Ok(c) => {
                if let Some(at) = c.token_expires_at {
                    let _ = session.token_deadline.set(
                        Instant::now()
                            + crate::caller::token_usable_for(at - crate::util::now_unix()),
                    );
                }
                let _ = session.route.set(c.route);
            }
            Err(source) => {
                session.closing.store(true, Ordering::Release);
                service.stats.close_session();
                service.stats.record_error(source.to_string());
                return Err(OpenError::Start {
                    service: service.name.to_string(),
                    source,
                });
            }
        }
        registry.insert(session.clone());
        service.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
        // The backend may have died while we were registering it.
        if session.closing.load(Ordering::Acquire) {
            registry.remove(&session.id);
        }
        tracing::debug!(service = %service.name, legacy, "session opened");
        Ok(session)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not take every later request down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// The backend waiting for this person's token, if that is what this session has.
    pub fn deferred(&self) -> Option<Arc<crate::route::deferred::Deferred>> {
        match self.route.get() {
            Some(Route::Deferred(d)) if d.real().is_none() => Some(d.clone()),
            _ => None,
        }
    }

    /// The aggregate (or governed service) behind this session, if that is what it has.
    pub fn aggregate(&self) -> Option<Arc<crate::route::aggregate::Aggregate>> {
        match self.route.get() {
            Some(Route::Aggregate(a)) => Some(a.clone()),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The protocol version the backend agreed to in `initialize`.
    pub fn protocol_version(&self) -> Option<String> {
        self.state().version.clone()
    }

    fn priming_id(&self, state: &State, stream: u64) -> Option<String> {
        // Older clients choke on events with empty data; prime 2025-11-25+ only.
        let v = state.version.as_deref()?;
        (v >= "2025-11-25").then(|| format!("{stream}.0"))
    }

    /// Forward client messages; returns the stream their answers will arrive on
    /// (none when there is no request among them).
    pub async fn submit(
        &self,
        messages: Vec<Message>,
    ) -> Result<Option<StreamReceiver>, SubmitError> {
        self.touch();
        let receiver = {
            let mut st = self.state();
            if self.is_closed() {
                return Err(SubmitError::Closed);
            }
            let mut requests: HashSet<&RequestId> = HashSet::new();
            for id in messages.iter().filter_map(Message::request_id) {
                if st.pending.contains_key(id) || !requests.insert(id) {
                    return Err(SubmitError::DuplicateId(id.clone()));
                }
            }
            for m in &messages {
                if m.method() == Some("notifications/cancelled")
                    && let Some(p) = cancel_pending(&mut st, m)
                    && let Some(a) = &p.audit
                {
                    self.audit(&p.method, a, "cancelled");
                }
            }
            if requests.is_empty() {
                None
            } else {
                let (stream, receiver) = if self.legacy {
                    (st.get_stream.unwrap_or(0), None)
                } else {
                    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                    let stream = new_slot(&mut st, SlotKind::Post, Some(tx));
                    let priming_id = self.priming_id(&st, stream);
                    (stream, Some(StreamReceiver { rx, priming_id }))
                };
                let now = Instant::now();
                for m in &messages {
                    if let Kind::Request { id, method } = &m.kind {
                        let timeout = if &**method == "initialize" {
                            self.service.limits.startup_timeout
                        } else {
                            self.service.limits.request_timeout
                        };
                        let progress = m.progress_token();
                        if let Some(tok) = &progress {
                            st.progress.insert(tok.clone(), id.clone());
                        }
                        st.pending.insert(
                            id.clone(),
                            Pending {
                                stream,
                                method: method.clone(),
                                deadline: now + timeout,
                                timeout,
                                progress,
                                audit: Audit::of(method, &m.raw, self.service.audit_arguments),
                            },
                        );
                        if let Some(slot) = st.streams.get_mut(&stream) {
                            slot.open += 1;
                        }
                    }
                }
                receiver
            }
        };
        if let Some(backend) = self.route.get() {
            for m in messages {
                if backend.send(m).await.is_err() {
                    // The exit watcher answers every pending request; nothing to add.
                    break;
                }
            }
        }
        Ok(receiver)
    }

    /// Open the GET stream, or resume any stream from `Last-Event-ID`.
    pub fn open_get(&self, last_event_id: Option<&str>) -> Result<StreamReceiver, SubmitError> {
        self.touch();
        let mut st = self.state();
        if self.is_closed() {
            return Err(SubmitError::Closed);
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if let Some((stream, after)) = last_event_id.and_then(parse_event_id) {
            let known =
                st.streams.contains_key(&stream) || st.log.iter().any(|l| l.stream == stream);
            if known {
                for l in st
                    .log
                    .iter()
                    .filter(|l| l.stream == stream && l.seq > after)
                {
                    // The log holds at most EVENT_LOG_CAPACITY (< STREAM_QUEUE) events.
                    let _ = tx.try_send(Outgoing {
                        event_id: format!("{}.{}", l.stream, l.seq).into(),
                        data: l.data.clone(),
                        is_response: l.is_response,
                        last: false,
                    });
                }
                if let Some(slot) = st.streams.get_mut(&stream) {
                    slot.sink = Some(tx);
                }
                // A finished stream: the replay is all there is, and dropping `tx` ends it.
                return Ok(StreamReceiver {
                    rx,
                    priming_id: None,
                });
            }
        }
        if let Some(old) = st.get_stream.take() {
            st.streams.remove(&old);
        }
        let stream = new_slot(&mut st, SlotKind::Get, Some(tx));
        st.get_stream = Some(stream);
        let queued: Vec<Bytes> = st.undelivered.drain(..).collect();
        for data in queued {
            emit(&mut st, stream, data, false, false);
        }
        let priming_id = self.priming_id(&st, stream);
        drop(st);
        if let Some(b) = self.route.get() {
            b.client_listens();
        }
        Ok(StreamReceiver { rx, priming_id })
    }

    /// Make this a session kept for 2026-07-28 clients: notifications that
    /// belong to no request go to [`Session::notices`] listeners.
    pub fn set_bridged(&self) {
        let mut n = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        if n.is_none() && !self.is_closed() {
            *n = Some(tokio::sync::broadcast::channel(NOTICE_QUEUE).0);
        }
    }

    /// Notifications that belong to no request, from now on (a bridged
    /// session's only stream for them; the backend is told someone listens).
    pub fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Bytes>> {
        let rx = self
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()?
            .subscribe();
        if let Some(b) = self.route.get() {
            b.client_listens();
        }
        Some(rx)
    }

    /// The one stream of a legacy SSE session (opened with `legacy = true`).
    pub fn open_legacy_stream(&self) -> StreamReceiver {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        {
            let mut st = self.state();
            let stream = new_slot(&mut st, SlotKind::Legacy, Some(tx));
            st.get_stream = Some(stream);
        }
        if let Some(b) = self.route.get() {
            b.client_listens();
        }
        StreamReceiver {
            rx,
            priming_id: None,
        }
    }

    /// Answer overdue requests with a timeout error, and tell the backend to stop
    /// working on them. Returns whether the session has been idle too long.
    pub async fn sweep(&self, now: Instant) -> Option<&'static str> {
        if self.token_deadline.get().is_some_and(|d| now >= *d) {
            tracing::info!(service = %self.service.name, "the upstream token of this session is about to expire: ending it so the client reconnects with a fresh one");
            return Some("the person's token for this service is about to expire");
        }
        let mut cancels = Vec::new();
        let idle = {
            let mut st = self.state();
            let overdue: Vec<RequestId> = st
                .pending
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in overdue {
                let Some(p) = st.pending.remove(&id) else {
                    continue;
                };
                if let Some(tok) = &p.progress {
                    st.progress.remove(tok);
                }
                if let Some(a) = &p.audit {
                    self.audit(&p.method, a, "timeout");
                }
                let message = format!(
                    "service {:?} did not answer {:?} within {} ({})",
                    self.service.name.as_str(),
                    &*p.method,
                    humantime::format_duration(p.timeout),
                    if &*p.method == "initialize" {
                        "startupTimeout"
                    } else {
                        "requestTimeout"
                    }
                );
                tracing::warn!(service = %self.service.name, method = &*p.method, "{message}");
                let err = jsonrpc::error_response(Some(&id), code::REQUEST_TIMEOUT, &message, None);
                emit(&mut st, p.stream, err.raw, true, true);
                cancels.push(jsonrpc::notification(
                    "notifications/cancelled",
                    serde_json::json!({ "requestId": jsonrpc::id_value(&id), "reason": message }),
                ));
            }
            let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
            let idle_for = now.saturating_duration_since(self.created + last);
            st.pending.is_empty() && idle_for >= self.service.limits.idle_timeout
        };
        if let Some(backend) = self.route.get() {
            for c in cancels {
                let _ = backend.send(c).await;
            }
        }
        idle.then_some("idle timeout")
    }

    /// Close the session and its backend. Pending requests get an error at once.
    pub async fn close(&self, reason: &str) {
        let message = format!(
            "the session was closed ({reason}) before service {:?} answered",
            self.service.name.as_str()
        );
        if self.shut(&message) {
            tracing::debug!(service = %self.service.name, "session closed: {reason}");
            if let Some(b) = self.route.get() {
                b.close().await;
            }
        }
    }

    /// The synchronous part of closing; true for the one caller that does it.
    fn shut(&self, pending_message: &str) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        {
            let mut st = self.state();
            let pending: Vec<(RequestId, Pending)> = st.pending.drain().collect();
            for (id, p) in pending {
                if let Some(a) = &p.audit {
                    self.audit(&p.method, a, "session_closed");
                }
                let err = jsonrpc::error_response(
                    Some(&id),
                    code::BACKEND_UNAVAILABLE,
                    pending_message,
                    None,
                );
                emit(&mut st, p.stream, err.raw, true, true);
            }
            st.streams.clear();
            st.undelivered.clear();
            st.progress.clear();
        }
        // Ends every subscriptions/listen stream on this session.
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.registry.remove(&self.id);
        self.service.stats.close_session();
        true
    }

    pub fn process_count_hint(&self) -> usize {
        self.route.get().map_or(0, Route::process_count)
    }
}

impl Inbox for Session {
    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        let mut close_after = false;
        {
            let mut st = self.state();
            if self.is_closed() {
                return;
            }
            match &msg.kind {
                Kind::Response { id: Some(id) } => {
                    let Some(p) = st.pending.remove(id) else {
                        tracing::debug!(service = %self.service.name, "dropped an answer to request {id}, which is no longer waiting (timed out or cancelled)");
                        return;
                    };
                    if let Some(tok) = &p.progress {
                        st.progress.remove(tok);
                    }
                    if let Some(a) = &p.audit {
                        self.audit(&p.method, a, outcome(&msg.raw));
                    }
                    if &*p.method == "initialize" {
                        match initialize_outcome(&msg.raw) {
                            Some(version) => st.version = Some(version),
                            None => close_after = true,
                        }
                    }
                    emit(&mut st, p.stream, msg.raw, true, true);
                }
                Kind::Response { id: None } => {
                    tracing::warn!(service = %self.service.name, "the service sent an error without a request id; it is not forwarded");
                }
                Kind::Notification { method } => {
                    let by_progress = if &**method == "notifications/progress" {
                        msg.progress_token()
                            .and_then(|t| st.progress.get(&t).cloned())
                            .and_then(|rid| st.pending.get(&rid).map(|p| p.stream))
                    } else {
                        None
                    };
                    let target = by_progress.or_else(|| related_stream(&st, related.as_ref()));
                    if target.is_none()
                        && !matches!(
                            &**method,
                            "notifications/progress" | "notifications/message"
                        )
                        && let Some(tx) = self
                            .notices
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .as_ref()
                    {
                        // Nobody listening is fine: 2026-07-28 clients ask for these.
                        let _ = tx.send(msg.raw);
                        return;
                    }
                    route(&mut st, target, msg.raw);
                }
                Kind::Request { .. } => {
                    let target = related_stream(&st, related.as_ref());
                    route(&mut st, target, msg.raw);
                }
            }
        }
        if close_after && let Some(me) = self.me.upgrade() {
            tokio::spawn(async move { me.close("initialize failed").await });
        }
    }

    fn backend_closed(&self, reason: String) {
        let message = format!(
            "service {:?} stopped before answering: {reason}",
            self.service.name.as_str()
        );
        if self.shut(&message) {
            tracing::info!(service = %self.service.name, "session ended by the backend: {reason}");
            self.service.stats.record_error(reason);
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    if let Some(b) = me.route.get() {
                        b.close().await;
                    }
                });
            }
        }
    }
}

/// Notifications kept for a slow `subscriptions/listen` stream before it
/// misses some (it is told with a lag notice, not silently).
const NOTICE_QUEUE: usize = 256;

/// `Some(version)` for a successful `initialize` answer, `None` for an error.
fn initialize_outcome(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct R {
        result: Option<V>,
    }
    #[derive(serde::Deserialize)]
    struct V {
        #[serde(rename = "protocolVersion", default)]
        protocol_version: Option<String>,
    }
    let r: R = serde_json::from_slice(raw).ok()?;
    let v = r.result?;
    Some(v.protocol_version.unwrap_or_default())
}
