//! A configured service at run time: its settings, its HTTP client (one pool per
//! service) and the counters `/ready` reports.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::{self, BackendSpec, Limits, ServiceName};

/// What a service is at run time.
pub enum Kind {
    /// An MCP server the gateway reaches.
    Server(BackendSpec),
    /// An aggregated endpoint over these services.
    Aggregate(Vec<Arc<Service>>),
}

pub struct Service {
    pub name: ServiceName,
    pub kind: Kind,
    pub limits: Limits,
    /// Grace between SIGTERM and SIGKILL for this service's processes.
    pub shutdown_grace: Duration,
    /// Shared by all sessions of a remote service, so connections are pooled.
    pub http: reqwest::Client,
    pub stats: Stats,
    /// Whether each person needs a token of their own here (`$userToken`).
    pub needs_user_token: bool,
    /// The name people see for it on `/my/tokens` and in messages.
    pub display_name: String,
    /// Most sessions one person may hold open.
    pub max_sessions_per_user: usize,
    /// Whether audit records include tool-call arguments.
    pub audit_arguments: bool,
    /// Its backend depends on the person (`$user`, `$userToken`), so what it
    /// offers is cached per person.
    pub per_user: bool,
    /// For a remote service: whether it speaks MCP 2026-07-28 (its
    /// `server/discover` answer) or only the session era, as last probed.
    pub era: EraMemo,
}

/// What a probe of a remote service found, and when.
#[derive(Default)]
pub struct EraMemo(Mutex<Option<(std::time::Instant, Option<serde_json::Value>)>>);

impl EraMemo {
    /// The last finding if younger than `max_age`: `Some(Some(discover))` for a
    /// 2026-07-28 server, `Some(None)` for a session-era one.
    pub fn get(&self, max_age: Duration) -> Option<Option<serde_json::Value>> {
        let slot = self.0.lock().ok()?;
        let (at, found) = slot.as_ref()?;
        (at.elapsed() < max_age).then(|| found.clone())
    }

    pub fn set(&self, found: Option<serde_json::Value>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((std::time::Instant::now(), found));
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub sessions: AtomicUsize,
    pub processes: AtomicUsize,
    pub sessions_total: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

impl Stats {
    pub fn record_error(&self, message: impl Into<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some((SystemTime::now(), message.into()));
        }
    }

    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error.lock().ok().and_then(|s| s.clone())
    }

    /// Take a session slot unless the service is at its limit.
    pub fn try_open_session(&self, max: usize) -> bool {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn close_session(&self) {
        self.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Service {
    pub fn new(cfg: &config::Service, shutdown_grace: Duration) -> anyhow::Result<Service> {
        Ok(Service {
            name: cfg.name.clone(),
            kind: Kind::Server(cfg.backend.clone()),
            per_user: cfg.uses_user_values || cfg.needs_user_token(),
            limits: cfg.limits.clone(),
            shutdown_grace,
            http: http_client()?,
            stats: Stats::default(),
            era: EraMemo::default(),
            needs_user_token: cfg.needs_user_token(),
            display_name: cfg.display_name().to_string(),
            max_sessions_per_user: cfg.limits.max_sessions_per_user,
            audit_arguments: cfg.audit_arguments,
        })
    }

    /// `stdio`, `streamable-http`, `sse`, or `aggregate`.
    pub fn transport(&self) -> &'static str {
        match &self.kind {
            Kind::Server(spec) => spec.kind(),
            Kind::Aggregate(_) => "aggregate",
        }
    }

    /// An aggregated endpoint (`/mcp`, `/<group>/mcp`): its timeouts are the
    /// longest of its members', since one request may wait for any of them.
    pub fn aggregate(
        name: ServiceName,
        members: Vec<Arc<Service>>,
        shutdown_grace: Duration,
    ) -> anyhow::Result<Service> {
        let longest = |f: fn(&Limits) -> Duration, default: Duration| {
            members
                .iter()
                .map(|m| f(&m.limits))
                .max()
                .unwrap_or(default)
        };
        let limits = Limits {
            request_timeout: longest(|l| l.request_timeout, Limits::DEFAULT_REQUEST_TIMEOUT),
            startup_timeout: longest(|l| l.startup_timeout, Limits::DEFAULT_STARTUP_TIMEOUT),
            idle_timeout: Limits::DEFAULT_IDLE_TIMEOUT,
            max_sessions: Limits::DEFAULT_MAX_SESSIONS,
            max_sessions_per_user: Limits::DEFAULT_MAX_SESSIONS_PER_USER,
        };
        Ok(Service {
            display_name: format!(
                "all services at {}",
                crate::config::endpoint_path(name.as_str(), "mcp")
            ),
            name,
            kind: Kind::Aggregate(members),
            per_user: false,
            max_sessions_per_user: limits.max_sessions_per_user,
            limits,
            shutdown_grace,
            http: http_client()?,
            stats: Stats::default(),
            era: EraMemo::default(),
            needs_user_token: false,
            audit_arguments: false,
        })
    }
}

/// One client per service, so connections are pooled.
fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        // Redirects could carry configured secret headers to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}
