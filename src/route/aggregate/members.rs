//! Members' lifecycle: started on first use (the person's token looked up,
//! the service's `maxSessions` counted, the client's `initialize` replayed),
//! their lists fetched into the discovery cache, and dropped when they fail
//! or die (calls in flight answered, lists changed, retried later).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use super::catalog::{Catalog, ListKind};
use super::*;
use crate::jsonrpc::{self, RequestId, code};

/// Why a member could not be used. What the client sees (in an error
/// answer) and the log say the same.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("cannot build the request")]
    Build,
    #[error("{service}: {reason}")]
    Send { service: String, reason: String },
    #[error("{service} stopped before answering {method}")]
    Stopped { service: String, method: String },
    #[error("{service} did not answer {method} within {timeout:?}")]
    Timeout {
        service: String,
        method: String,
        timeout: std::time::Duration,
    },
    #[error("{service} sent an answer that is not JSON: {reason}")]
    Unreadable { service: String, reason: String },
    #[error("{service} answered {method} with an error: {message}")]
    Refused {
        service: String,
        method: String,
        message: String,
    },
    /// It failed recently and is left alone until the retry pause is over
    /// (the text says why it failed).
    #[error("{0}")]
    Unavailable(String),
    #[error("the session is closed")]
    Closed,
    #[error("stopped while starting: {0}")]
    DiedStarting(String),
    #[error(
        "the service has reached its limit of {max} open sessions (mcpServers.{service}.maxSessions)"
    )]
    Limit { service: String, max: usize },
    #[error("did not start within {0:?}")]
    StartTimeout(std::time::Duration),
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
}

impl Aggregate {
    /// The member's catalog. Shared with every session (per person where the
    /// backend depends on the person) while the member is as any other
    /// session's would be; once it has said its lists changed (e.g. a toolset
    /// switched on), this session keeps its own, so one person's session never
    /// changes what others see.
    pub(super) async fn catalog(&self, member: usize) -> Result<Arc<Catalog>, MemberError> {
        let key = self.cache_key(member).clone();
        let own = {
            let st = self.state();
            if let Some(c) = st.local.get(&member) {
                return Ok(c.clone());
            }
            st.running
                .get(&member)
                .is_some_and(|r| !r.pristine.load(Ordering::Acquire))
        };
        if !own && let Some(c) = self.access.catalogs.get(&key) {
            return Ok(c);
        }
        let running = self.member(member).await?;
        let mut raw = HashMap::new();
        for kind in ListKind::ALL {
            if running
                .init
                .pointer(&format!("/capabilities/{}", kind.capability()))
                .is_none()
            {
                continue;
            }
            raw.insert(kind, self.fetch_list(member, kind).await?);
        }
        let c = Arc::new(Catalog::new(
            &self.members[member].name,
            &self.access.delimiter,
            running.init.clone(),
            raw,
        ));
        if running.pristine.load(Ordering::Acquire) {
            self.access.catalogs.put(key, c.clone());
        } else {
            self.state().local.insert(member, c.clone());
        }
        Ok(c)
    }

    /// Every page of one list.
    pub(super) async fn fetch_list(
        &self,
        member: usize,
        kind: ListKind,
    ) -> Result<Vec<Value>, MemberError> {
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let mut result = self.call(member, kind.method(), params).await?;
            if let Some(Value::Array(list)) = result.get_mut(kind.field()).map(Value::take) {
                items.extend(list);
            }
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => return Ok(items),
            }
        }
        tracing::warn!(service = %self.members[member].name, "{} has more than {MAX_PAGES} pages; the rest is left out", kind.method());
        Ok(items)
    }

    /// A request of the gateway's own to a running member; its result.
    pub(super) async fn call(
        &self,
        member: usize,
        method: &str,
        params: Value,
    ) -> Result<Value, MemberError> {
        let running = self.member(member).await?;
        self.call_on(member, &running.backend, method, params).await
    }

    pub(super) async fn call_on(
        &self,
        member: usize,
        backend: &Route,
        method: &str,
        params: Value,
    ) -> Result<Value, MemberError> {
        let svc = &self.members[member];
        let id = jsonrpc::string_id(&format!("mcpgate-{}", self.next()));
        let key = id.as_json().to_string();
        let (tx, rx) = oneshot::channel();
        self.state().internal.insert(key.clone(), (member, tx));
        let msg = jsonrpc::from_value(&json!({
            "jsonrpc": "2.0", "id": jsonrpc::id_value(&id),
            "method": method, "params": params,
        }))
        .ok_or(MemberError::Build)?;
        let timeout = if method == "initialize" {
            svc.limits.startup_timeout
        } else {
            svc.limits.request_timeout
        };
        let sent = Box::pin(backend.send(msg)).await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.state().internal.remove(&key);
                return Err(MemberError::Send {
                    service: svc.name.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        let answer = match answer {
            Ok(Ok(a)) => a,
            // The waiter was dropped: the member stopped.
            Ok(Err(_)) => {
                return Err(MemberError::Stopped {
                    service: svc.name.to_string(),
                    method: method.to_string(),
                });
            }
            Err(_) => {
                self.state().internal.remove(&key);
                return Err(MemberError::Timeout {
                    service: svc.name.to_string(),
                    method: method.to_string(),
                    timeout,
                });
            }
        };
        let mut v: Value =
            serde_json::from_slice(&answer.raw).map_err(|e| MemberError::Unreadable {
                service: svc.name.to_string(),
                reason: e.to_string(),
            })?;
        if let Some(e) = v.get("error") {
            let text = e.get("message").and_then(Value::as_str).unwrap_or("error");
            return Err(MemberError::Refused {
                service: svc.name.to_string(),
                method: method.to_string(),
                message: text.to_string(),
            });
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// The member, started (and initialized) if it is not running, or
    /// restarted when the person's upstream token it runs with is about to
    /// expire (it must never be sent expired).
    pub(super) async fn member(&self, member: usize) -> Result<Arc<Running>, MemberError> {
        if let Some(r) = self.state().running.get(&member)
            && !r.expiring()
        {
            return Ok(r.clone());
        }
        let _guard = self.starting[member].lock().await;
        let stale = {
            let mut st = self.state();
            match st.running.get(&member) {
                Some(r) if !r.expiring() => return Ok(r.clone()),
                Some(_) => self.drop_member(&mut st, member),
                None => None,
            }
        };
        if let Some((old, failed)) = stale {
            self.fail(
                &failed,
                &format!(
                    "{}: the token it ran with expired",
                    self.members[member].name
                ),
            );
            Box::pin(old.backend.close()).await;
        }
        {
            let st = self.state();
            if let Some((until, why)) = st.down.get(&member)
                && *until > Instant::now()
            {
                return Err(MemberError::Unavailable(why.clone()));
            }
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(MemberError::Closed);
        }
        let svc = self.members[member].clone();
        let generation = self.next();
        self.state().starting_generation.insert(member, generation);
        let started = self.start(member, generation).await;
        let died = {
            let mut st = self.state();
            st.starting_generation.remove(&member);
            st.died_starting.remove(&member)
        };
        let started = match (started, died) {
            (Ok(r), Some(reason)) => {
                Box::pin(r.backend.close()).await;
                Err(MemberError::DiedStarting(reason))
            }
            (other, _) => other,
        };
        match started {
            Ok(r) => {
                if self.closed.load(Ordering::Acquire) {
                    Box::pin(r.backend.close()).await;
                    return Err(MemberError::Closed);
                }
                let mut st = self.state();
                st.down.remove(&member);
                st.running.insert(member, r.clone());
                Ok(r)
            }
            Err(why) => {
                let why = format!("{} is unavailable: {why}", svc.name);
                let err = MemberError::Unavailable(why.clone());
                tracing::warn!(endpoint = self.name, service = %svc.name, "{why}; tried again in {RETRY_AFTER:?}");
                // /ready is public: no person's reasons there.
                if !svc.per_user {
                    svc.stats.record_error(why.clone());
                }
                self.state()
                    .down
                    .insert(member, (Instant::now() + RETRY_AFTER, why));
                Err(err)
            }
        }
    }

    pub(super) async fn start(
        &self,
        member: usize,
        generation: u64,
    ) -> Result<Arc<Running>, MemberError> {
        let svc = self.members[member].clone();
        let token = self.access.token_for(&svc, self.caller.as_ref()).await?;
        let use_until = token.as_ref().and_then(|t| t.expires_at).map(|at| {
            Instant::now() + crate::caller::token_usable_for(at - crate::util::now_unix())
        });
        // Each member counts as a session of its service (maxSessions).
        if !svc.stats.try_open_session(svc.limits.max_sessions) {
            return Err(MemberError::Limit {
                service: svc.name.to_string(),
                max: svc.limits.max_sessions,
            });
        }
        let slot = SessionSlot(svc.clone());
        let inbox = Arc::new(MemberInbox {
            aggregate: self.me.clone(),
            member,
            generation,
        });
        let weak: InboxRef = Arc::downgrade(&inbox) as Weak<dyn Inbox>;
        let backend = tokio::time::timeout(
            svc.limits.startup_timeout,
            self.access.member(&svc, self.caller.as_ref(), token, weak),
        )
        .await
        .map_err(|_| MemberError::StartTimeout(svc.limits.startup_timeout))??;
        let params = self.state().client_init.clone().unwrap_or_else(|| {
            json!({
                "protocolVersion": crate::jsonrpc::SUPPORTED_VERSIONS[0],
                "capabilities": {},
                "clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
            })
        });
        let init = match self.call_on(member, &backend, "initialize", params).await {
            Ok(i) => i,
            Err(e) => {
                Box::pin(backend.close()).await;
                return Err(e);
            }
        };
        let _ = Box::pin(backend.send(jsonrpc::notification(
            "notifications/initialized",
            json!({}),
        )))
        .await;
        let running = Arc::new(Running {
            backend,
            init,
            _inbox: inbox,
            generation,
            pristine: AtomicBool::new(true),
            use_until,
            _slot: slot,
        });
        let level = self.state().log_level.clone();
        if let Some(level) = level
            && running.init.pointer("/capabilities/logging").is_some()
        {
            let _ = self
                .call_on(member, &running.backend, "logging/setLevel", level)
                .await;
        }
        if self.listening.load(Ordering::Acquire) {
            running.backend.client_listens();
        }
        tracing::debug!(endpoint = self.name, service = %svc.name, "member started");
        Ok(running)
    }

    /// Take a member out of this session: it stops running, the gateway's own
    /// requests to it fail at once, its requests to the client are forgotten.
    /// Returns it (to be closed) and the client ids of its calls in flight
    /// (to be answered with an error).
    pub(super) fn drop_member(
        &self,
        st: &mut State,
        member: usize,
    ) -> Option<(Arc<Running>, Vec<RequestId>)> {
        st.internal.retain(|_, (m, _)| *m != member);
        st.server_requests.retain(|_, (m, _)| *m != member);
        st.local.remove(&member);
        let ids: Vec<RequestId> = st
            .forwarded
            .iter()
            .filter(|(_, f)| f.member == member)
            .map(|(k, _)| k.clone())
            .collect();
        let failed = ids
            .iter()
            .filter_map(|k| st.forwarded.remove(k))
            .map(|f| f.client_id)
            .collect();
        st.running.remove(&member).map(|r| (r, failed))
    }

    /// Answer these client requests with an error.
    pub(super) fn fail(&self, ids: &[RequestId], why: &str) {
        for id in ids {
            self.to_client(
                jsonrpc::error_response(Some(id), code::BACKEND_UNAVAILABLE, why, None),
                None,
            );
        }
    }

    /// A member's backend is gone: its requests fail, it drops out of the
    /// lists, and it is tried again after a pause.
    pub(super) fn member_down(&self, member: usize, generation: u64, reason: String) {
        let svc = &self.members[member];
        let dropped = {
            let mut st = self.state();
            // Whatever the gateway was waiting for from it will not come.
            st.internal.retain(|_, (m, _)| *m != member);
            if st.starting_generation.get(&member) == Some(&generation) {
                // Still starting: the start sees this and fails.
                st.died_starting.insert(member, reason.clone());
                return;
            }
            if st
                .running
                .get(&member)
                .is_none_or(|r| r.generation != generation)
            {
                return;
            }
            let why = format!("{} stopped: {reason}", svc.name);
            st.down.insert(member, (Instant::now() + RETRY_AFTER, why));
            self.drop_member(&mut st, member)
        };
        tracing::warn!(endpoint = self.name, service = %svc.name, "member stopped: {reason}");
        if !svc.per_user {
            svc.stats.record_error(format!("stopped: {reason}"));
        }
        if !self.prefixed {
            // A governed service is its only member: the session ends with it,
            // as an ungoverned one does.
            if let Some(s) = self.session.upgrade() {
                s.backend_closed(reason);
            }
            return;
        }
        if let Some((_, failed)) = dropped {
            self.fail(
                &failed,
                &format!("{} stopped before answering: {reason}", svc.name),
            );
        }
        self.lists_changed(&[ListKind::Tools, ListKind::Prompts, ListKind::Resources]);
    }

    pub(super) fn lists_changed(&self, kinds: &[ListKind]) {
        for k in kinds {
            let method = match k {
                ListKind::Tools => "notifications/tools/list_changed",
                ListKind::Prompts => "notifications/prompts/list_changed",
                ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
            };
            self.to_client(jsonrpc::notification(method, json!({})), None);
        }
    }
}
