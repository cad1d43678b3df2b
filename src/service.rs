//! A configured service at run time: its settings, its HTTP client (one pool per
//! service) and the counters `/ready` reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::config::{self, BackendSpec, Limits, ServiceName};

pub struct Service {
    pub name: ServiceName,
    pub backend: BackendSpec,
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
    /// `"shared": true`: one backend per person for all their sessions.
    pub shared: Option<crate::backend::shared::Pool>,
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            // Redirects could carry configured secret headers to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Service {
            name: cfg.name.clone(),
            backend: cfg.backend.clone(),
            limits: cfg.limits.clone(),
            shutdown_grace,
            http,
            stats: Stats::default(),
            needs_user_token: cfg.needs_user_token(),
            display_name: cfg.display_name().to_string(),
            max_sessions_per_user: cfg.limits.max_sessions_per_user,
            audit_arguments: cfg.audit_arguments,
            shared: cfg.shared.then(crate::backend::shared::Pool::default),
        })
    }
}
