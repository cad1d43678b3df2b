//! Many services behind one session, and policy on every service.
//!
//! An [`Aggregate`] is a backend made of other backends (its *members*). It
//! serves two kinds of endpoint:
//!
//! - the aggregated endpoints (`/mcp`, `/<group>/mcp`): every member's tools
//!   and prompts renamed `<service><delimiter><name>`, resources `<service>+<uri>`
//!   (see `names`). The gateway answers `initialize` itself (the union of
//!   what the members can do, their instructions labelled per service) and
//!   starts a member only when something needs it: lists come from the
//!   discovery cache (`catalog`) while it is fresh.
//! - a governed service's own endpoint (one with a `toolFilter`, or named by
//!   `policies`): one member, names unchanged, its own `initialize` answer.
//!
//! Either way the lists are filtered by `policy`, and a call of a hidden tool
//! gets the same "Unknown tool" error as a call of a tool that does not exist
//! (the gateway checks both against the service's list).
//!
//! Ids: every request forwarded to a member gets a new id (`mcpgate-N`), so
//! requests of the client and of the gateway never collide on a member; a
//! member's own requests (sampling, elicitation, roots) reach the client under
//! the member's id, prefixed `<service><delimiter>` on aggregated endpoints
//! (`mcpgate-<service>-N` if that is taken by another request waiting), and
//! the client's answers go back to the member that asked, under its id. Cancellations follow both ways.
//!
//! A member that cannot start, or dies, drops out (its items leave the lists,
//! the client is told the lists changed, the reason is logged) and the others
//! keep working; after a pause it is tried again on the next use.

mod calls;
pub mod catalog;
mod client;
mod from_members;
mod initialize;
mod lists;
mod members;
pub mod names;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use super::{Route, Routes};
use crate::backend::{BackendError, Inbox, InboxRef};
use crate::caller::Caller;
use crate::jsonrpc::{self, Message, RequestId};
use crate::service::Service;
use catalog::{Catalog, CatalogKey, ListKind};

/// How long a member that failed is left alone before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Most server-to-client requests awaiting the client's answer per session.
const MAX_SERVER_REQUESTS: usize = 1024;
/// Most pages fetched from one service for one list.
const MAX_PAGES: usize = 100;

/// A member running for this session.
struct Running {
    backend: Route,
    /// Its `initialize` result.
    init: Value,
    /// Kept alive here: the backend holds only a weak reference.
    _inbox: Arc<MemberInbox>,
    generation: u64,
    /// It has not said its lists changed: its lists are everyone's.
    pristine: AtomicBool,
    /// Until when it may use the person's upstream token it runs with (the
    /// same rule as sessions: 30 s before expiry, at least half its life).
    use_until: Option<Instant>,
    _slot: SessionSlot,
}

impl Running {
    fn expiring(&self) -> bool {
        self.use_until.is_some_and(|t| Instant::now() >= t)
    }
}

/// One of the service's `maxSessions`, held while a member runs.
struct SessionSlot(Arc<Service>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.stats.close_session();
    }
}

/// A client request a member is working on.
struct Forward {
    member: usize,
    client_id: RequestId,
    /// `resources/read`: the contents' URIs are renamed on the way back.
    rename_contents: bool,
    /// Order of forwarding.
    seq: u64,
}

#[derive(Default)]
struct State {
    running: HashMap<usize, Arc<Running>>,
    /// Members that failed: when to try again, and why.
    down: HashMap<usize, (Instant, String)>,
    /// Forwarded requests, by the id the member sees (JSON text).
    forwarded: HashMap<RequestId, Forward>,
    /// The gateway's own requests to members, by id: (member, waiter).
    internal: HashMap<String, (usize, oneshot::Sender<Message>)>,
    /// The generation of each member being started now.
    starting_generation: HashMap<usize, u64>,
    /// Members that died while starting, and why.
    died_starting: HashMap<usize, String>,
    /// This session's own catalogs, of members whose lists changed here.
    local: HashMap<usize, Arc<Catalog>>,
    /// Client requests cancelled before they reached their member.
    cancelled_early: std::collections::VecDeque<RequestId>,
    /// Members' requests to the client, by the id the client sees: (member, its id).
    server_requests: HashMap<String, (usize, RequestId)>,
    /// The client's `initialize` params, replayed to each member.
    client_init: Option<Value>,
    /// The client's `logging/setLevel` params, for members started later.
    log_level: Option<Value>,
}

pub struct Aggregate {
    me: Weak<Aggregate>,
    /// The endpoint (for logs).
    name: String,
    session: InboxRef,
    members: Vec<Arc<Service>>,
    /// Names are prefixed (aggregated endpoints) or not (a governed service).
    prefixed: bool,
    access: Arc<Routes>,
    /// Who is calling (their own token, if any, is looked up per member).
    caller: Option<Arc<Caller>>,
    /// Each member's discovery-cache key (per person where it matters).
    keys: Vec<CatalogKey>,
    starting: Vec<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// The client has a GET stream: members started later are told too.
    listening: AtomicBool,
}

/// Where a member's messages arrive.
struct MemberInbox {
    aggregate: Weak<Aggregate>,
    member: usize,
    generation: u64,
}

impl Inbox for MemberInbox {
    fn deliver(&self, msg: Message, related: Option<RequestId>) {
        if let Some(a) = self.aggregate.upgrade() {
            a.on_member_message(self.member, self.generation, msg, related);
        }
    }

    fn backend_closed(&self, reason: String) {
        if let Some(a) = self.aggregate.upgrade() {
            a.member_down(self.member, self.generation, reason);
        }
    }
}

/// An error answer for a request.
type Refusal = (i64, String);

impl Aggregate {
    /// An aggregated endpoint's session: nothing starts until it is needed.
    pub fn new(
        endpoint: &Service,
        members: Vec<Arc<Service>>,
        prefixed: bool,
        access: &Arc<Routes>,
        session: InboxRef,
        caller: Option<&Arc<Caller>>,
    ) -> Arc<Aggregate> {
        let keys = members
            .iter()
            .map(|svc| {
                let person = svc
                    .per_user
                    .then(|| caller.map(|c| c.user.clone()))
                    .flatten();
                (svc.name.clone(), person)
            })
            .collect();
        Arc::new_cyclic(|me| Aggregate {
            me: me.clone(),
            keys,
            name: endpoint.name.to_string(),
            session,
            starting: members
                .iter()
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            members,
            prefixed,
            access: access.clone(),
            caller: caller.cloned(),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            listening: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn to_client(&self, msg: Message, related: Option<RequestId>) {
        if let Some(s) = self.session.upgrade() {
            s.deliver(msg, related);
        }
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn cache_key(&self, member: usize) -> &CatalogKey {
        &self.keys[member]
    }

    /// A message from the client. (Boxed: members are backends too, so the
    /// future type would otherwise contain itself.)
    pub fn send(
        &self,
        msg: Message,
    ) -> futures_util::future::BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.send_inner(msg))
    }

    /// The person's token for a member changed: the member restarts with the
    /// new one on next use, and the client is told the lists may differ.
    pub async fn token_changed(&self, service: &str) {
        let Some(member) = self.members.iter().position(|s| s.name.as_str() == service) else {
            return;
        };
        // After any start in progress, so it cannot install the old token.
        let _guard = self.starting[member].lock().await;
        self.access.catalogs.invalidate(self.cache_key(member));
        let dropped = {
            let mut st = self.state();
            st.down.remove(&member);
            self.drop_member(&mut st, member)
        };
        if let Some((old, failed)) = dropped {
            self.fail(
                &failed,
                &format!("{}: your token for it changed; call again", service),
            );
            Box::pin(old.backend.close()).await;
        }
        self.lists_changed(&[ListKind::Tools]);
    }

    /// What a member offers (from the cache, or by starting it), for
    /// `mcpgate policy explain`.
    pub async fn discover(&self, member: usize) -> Result<Arc<Catalog>, members::MemberError> {
        self.catalog(member).await
    }

    /// Whether this aggregate has a member of that name.
    pub fn has_member(&self, service: &str) -> bool {
        self.members.iter().any(|s| s.name.as_str() == service)
    }

    pub fn client_listens(&self) {
        self.listening.store(true, Ordering::Release);
        let running: Vec<Arc<Running>> = self.state().running.values().cloned().collect();
        for r in running {
            r.backend.client_listens();
        }
    }

    pub fn process_count(&self) -> usize {
        self.state()
            .running
            .values()
            .map(|r| r.backend.process_count())
            .sum()
    }

    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Starts in progress finish first, so their backends are seen here.
        for lock in &self.starting {
            let _ = lock.lock().await;
        }
        let running: Vec<Arc<Running>> = self.state().running.drain().map(|(_, r)| r).collect();
        let closes = running.iter().map(|r| Box::pin(r.backend.close()));
        futures_util::future::join_all(closes).await;
    }
}

/// The id a request forwarded to a member carries.
fn internal_id(seq: u64) -> RequestId {
    jsonrpc::string_id(&format!("mcpgate-{seq}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_are_readdressed_in_place() {
        let raw = br#"{ "jsonrpc":"2.0", "params": {"arguments": {"name": "keep"}, "name" : "s0_echo", "_meta": {"progressToken": 3}}, "id" : 7, "method":"tools/call"}"#;
        let call = calls::NamedCall::parse(raw).unwrap();
        assert_eq!(call.name().unwrap(), "s0_echo");
        let out = call.rebuild(&internal_id(5), "tools/call", "echo").unwrap();
        let v: Value = serde_json::from_slice(&out.raw).unwrap();
        assert_eq!(v["id"], "mcpgate-5");
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"]["name"], "keep");
        assert_eq!(v["params"]["_meta"]["progressToken"], 3);
        // A repeated name does not fit the fast path.
        assert!(calls::NamedCall::parse(br#"{"id":1,"params":{"name":"a","name":"b"}}"#).is_none());

        let answer = Message::parse(bytes::Bytes::from_static(
            br#"{"result":{"content":[{"id":"mcpgate-5","text":"x"}]},"jsonrpc":"2.0","id":"mcpgate-5"}"#,
        ))
        .unwrap();
        let back = jsonrpc::with_id(&answer, &jsonrpc::string_id("c-1")).unwrap();
        let v: Value = serde_json::from_slice(&back.raw).unwrap();
        assert_eq!(v["id"], "c-1");
        assert_eq!(
            v["result"]["content"][0]["id"], "mcpgate-5",
            "only the top-level id changes"
        );
    }
}
