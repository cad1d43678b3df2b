//! One backend for several sessions of the same person (a service with
//! `"shared": true`): e.g. one process per person however many clients they
//! connect.
//!
//! Sessions pick their request ids and progress tokens independently, so both
//! are rewritten on the way in (`"s<member>:<original>"`) and restored on the
//! way out: every answer reaches exactly the session that asked, never the
//! others (a peer broadcast replies to every session of a shared process). The
//! server is initialized once; later sessions get its cached `initialize`
//! answer. Notifications that concern no request (`list_changed`, log
//! messages) go to every session of the person; a server's own requests
//! (sampling, elicitation, roots) go to the session that spoke last. The
//! process ends with its last session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::backend::{Backend, BackendError, Inbox, InboxRef};
use crate::caller::UserId;
use crate::config::BackendSpec;
use crate::jsonrpc::{self, Kind, Message, RequestId};
use crate::service::Service;

/// Who shares a backend: a person and (the hash of) the token it was started
/// with; `None` on gateways without sign-in.
pub type PoolKey = Option<(UserId, Option<String>)>;

/// Shared backends of one service, by person.
#[derive(Default)]
pub struct Pool {
    by_owner: Mutex<HashMap<PoolKey, Weak<Shared>>>,
}

impl Pool {
    /// A member of this person's shared backend, starting it if needed.
    pub async fn join(
        &self,
        service: &Arc<Service>,
        owner: PoolKey,
        spec: &BackendSpec,
        inbox: InboxRef,
    ) -> Result<Arc<Member>, BackendError> {
        // Holding the lock across the start would serialise unrelated people;
        // a race here only means two processes briefly, the second one wins.
        let existing = self
            .lock()
            .get(&owner)
            .and_then(Weak::upgrade)
            .filter(|s| !s.is_closed());
        let shared = match existing {
            Some(s) => s,
            None => {
                let s = Shared::start(service, spec).await?;
                self.lock().insert(owner, Arc::downgrade(&s));
                s
            }
        };
        Ok(shared.add(inbox))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Weak<Shared>>> {
        self.by_owner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Shared {
    real: OnceLock<Backend>,
    service_name: String,
    members: Mutex<HashMap<u64, InboxRef>>,
    next_member: AtomicU64,
    state: Mutex<State>,
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Rewritten request id (JSON text) -> (member, original id, rewritten
    /// progress token if the request asked for progress).
    pending: HashMap<String, (u64, RequestId, Option<String>)>,
    /// Rewritten progress token (JSON text) -> (member, original token JSON).
    progress: HashMap<String, (u64, Value)>,
    /// The server's `initialize` answer (its `result`), once it came.
    init_result: Option<Value>,
    /// Members waiting for the first `initialize` answer: (member, their id).
    init_waiting: Vec<(u64, RequestId)>,
    initialize_sent: bool,
    initialized_sent: bool,
    /// The member that spoke last (gets the server's own requests).
    last_member: u64,
}

/// One session's handle on a shared backend.
pub struct Member {
    shared: Arc<Shared>,
    id: u64,
}

impl Shared {
    async fn start(
        service: &Arc<Service>,
        spec: &BackendSpec,
    ) -> Result<Arc<Shared>, BackendError> {
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            real: OnceLock::new(),
            service_name: service.name.to_string(),
            members: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            closed,
        });
        // The process delivers to this shared backend, which routes to members.
        let inbox: InboxRef = Arc::downgrade(&shared) as Weak<dyn Inbox>;
        let real = Backend::start(service, spec, inbox).await?;
        let _ = shared.real.set(real);
        Ok(shared)
    }

    async fn send_real(&self, msg: Message) -> Result<(), BackendError> {
        match self.real.get() {
            Some(r) => Box::pin(r.send(msg)).await,
            None => Err(BackendError::Closed),
        }
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(self: &Arc<Self>, inbox: InboxRef) -> Arc<Member> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, inbox);
        Arc::new(Member {
            shared: self.clone(),
            id,
        })
    }

    fn member_inbox(&self, id: u64) -> Option<Arc<dyn Inbox>> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(Weak::upgrade)
    }

    fn all_inboxes(&self) -> Vec<Arc<dyn Inbox>> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl Member {
    pub async fn send(&self, msg: Message) -> Result<(), BackendError> {
        let sh = &self.shared;
        let out = {
            let mut st = sh.lock();
            st.last_member = self.id;
            match &msg.kind {
                Kind::Request { id, method } if &**method == "initialize" => {
                    if let Some(result) = &st.init_result {
                        let answer = jsonrpc::result_response(id, result);
                        drop(st);
                        if let Some(inbox) = sh.member_inbox(self.id) {
                            inbox.deliver(answer, None);
                        }
                        return Ok(());
                    }
                    st.init_waiting.push((self.id, id.clone()));
                    if st.initialize_sent {
                        return Ok(());
                    }
                    st.initialize_sent = true;
                    Some(rewrite(&msg, &mut st, self.id, id).ok_or(BackendError::Closed)?)
                }
                Kind::Notification { method } if &**method == "notifications/initialized" => {
                    if st.initialized_sent {
                        None
                    } else {
                        st.initialized_sent = true;
                        Some(msg)
                    }
                }
                Kind::Request { id, .. } => {
                    Some(rewrite(&msg, &mut st, self.id, id).ok_or(BackendError::Closed)?)
                }
                Kind::Notification { method } if &**method == "notifications/cancelled" => {
                    Some(rewrite_cancel(&msg, self.id).unwrap_or(msg))
                }
                _ => Some(msg),
            }
        };
        match out {
            Some(m) => sh.send_real(m).await,
            None => Ok(()),
        }
    }

    pub async fn close(&self) {
        let sh = &self.shared;
        let last = {
            let mut members = sh.members.lock().unwrap_or_else(|p| p.into_inner());
            members.remove(&self.id);
            members.is_empty()
        };
        {
            let mut st = sh.lock();
            st.pending.retain(|_, (m, _, _)| *m != self.id);
            st.progress.retain(|_, (m, _)| *m != self.id);
        }
        if last {
            let _ = sh.closed.send(true);
            if let Some(r) = sh.real.get() {
                Box::pin(r.close()).await;
            }
        }
    }

    pub fn client_listens(&self) {
        if let Some(r) = self.shared.real.get() {
            r.client_listens();
        }
    }
}

/// The member-qualified form of a client's id or progress token.
fn qualify(member: u64, original: &str) -> String {
    Value::String(format!("s{member}:{original}")).to_string()
}

fn rewrite(msg: &Message, st: &mut State, member: u64, id: &RequestId) -> Option<Message> {
    let mut v: Value = serde_json::from_slice(&msg.raw).ok()?;
    let new_id = qualify(member, id.as_json());
    v["id"] = serde_json::from_str(&new_id).ok()?;
    let mut progress = None;
    if let Some(tok) = v.pointer("/params/_meta/progressToken").cloned() {
        let new_tok = qualify(member, &tok.to_string());
        v["params"]["_meta"]["progressToken"] = serde_json::from_str(&new_tok).ok()?;
        st.progress.insert(new_tok.clone(), (member, tok));
        progress = Some(new_tok);
    }
    st.pending.insert(new_id, (member, id.clone(), progress));
    Message::parse(Bytes::from(v.to_string())).ok()
}

fn rewrite_cancel(msg: &Message, member: u64) -> Option<Message> {
    let mut v: Value = serde_json::from_slice(&msg.raw).ok()?;
    let id = v.pointer("/params/requestId")?.to_string();
    v["params"]["requestId"] = serde_json::from_str(&qualify(member, &id)).ok()?;
    Message::parse(Bytes::from(v.to_string())).ok()
}

impl Inbox for Shared {
    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        match &msg.kind {
            Kind::Response { id: Some(id) } => {
                let (target, init) = {
                    let mut st = self.lock();
                    let target = st.pending.remove(id.as_json()).map(|(m, orig, progress)| {
                        if let Some(p) = progress {
                            st.progress.remove(&p);
                        }
                        (m, orig)
                    });
                    let init = if target.as_ref().is_some_and(|(m, orig)| {
                        st.init_waiting
                            .iter()
                            .any(|(wm, wid)| wm == m && wid == orig)
                    }) {
                        let result = serde_json::from_slice::<Value>(&msg.raw)
                            .ok()
                            .and_then(|v| v.get("result").cloned());
                        st.init_result = result.clone();
                        let waiting = std::mem::take(&mut st.init_waiting);
                        result.map(|r| (r, waiting))
                    } else {
                        None
                    };
                    (target, init)
                };
                if let Some((result, waiting)) = init {
                    for (m, orig) in waiting {
                        if let Some(inbox) = self.member_inbox(m) {
                            inbox.deliver(jsonrpc::result_response(&orig, &result), None);
                        }
                    }
                    return;
                }
                let Some((member, original)) = target else {
                    tracing::debug!(
                        service = self.service_name,
                        "a shared backend answered an unknown request {id}"
                    );
                    return;
                };
                if let (Some(inbox), Some(m)) =
                    (self.member_inbox(member), jsonrpc::with_id(&msg, &original))
                {
                    inbox.deliver(m, Some(original));
                }
            }
            Kind::Notification { method } if &**method == "notifications/progress" => {
                let Some(tok) = msg.progress_token() else {
                    return;
                };
                let target = self.lock().progress.get(&tok).cloned();
                let Some((member, original)) = target else {
                    return;
                };
                let restored = serde_json::from_slice::<Value>(&msg.raw)
                    .ok()
                    .and_then(|mut v| {
                        v["params"]["progressToken"] = original;
                        Message::parse(Bytes::from(v.to_string())).ok()
                    });
                if let (Some(inbox), Some(m)) = (self.member_inbox(member), restored) {
                    inbox.deliver(m, None);
                }
            }
            Kind::Request { id, .. } => {
                let _ = id;
                let member = self.lock().last_member;
                if let Some(inbox) = self.member_inbox(member) {
                    inbox.deliver(msg, related);
                }
            }
            _ => {
                for inbox in self.all_inboxes() {
                    inbox.deliver(msg.clone(), None);
                }
            }
        }
    }

    fn backend_closed(&self, reason: String) {
        let _ = self.closed.send(true);
        for inbox in self.all_inboxes() {
            inbox.backend_closed(reason.clone());
        }
    }
}
