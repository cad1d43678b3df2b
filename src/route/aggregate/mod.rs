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
//! new ids too (`mcpgate-<service>-N`), and the client's answers go back to
//! the member that asked, under its id. Cancellations follow both ways.
//!
//! A member that cannot start, or dies, drops out (its items leave the lists,
//! the client is told the lists changed, the reason is logged) and the others
//! keep working; after a pause it is tried again on the next use.

pub mod catalog;
pub mod names;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Route, Routes};
use crate::backend::{BackendError, Inbox, InboxRef};
use crate::caller::Caller;
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::policy::ItemKind;
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
    /// When the person's upstream token it runs with expires (unix seconds).
    expires_at: Option<i64>,
    _slot: SessionSlot,
}

impl Running {
    fn expiring(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at - crate::util::now_unix() < 30)
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

    // ---- from the client ------------------------------------------------------

    /// A message from the client. (Boxed: members are backends too, so the
    /// future type would otherwise contain itself.)
    pub fn send(
        &self,
        msg: Message,
    ) -> futures_util::future::BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.send_inner(msg))
    }

    async fn send_inner(&self, msg: Message) -> Result<(), BackendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BackendError::Closed);
        }
        match &msg.kind {
            Kind::Request { id, method } => {
                if let Some((member, running, internal, out)) = self.quick(id, method, &msg) {
                    if let Err((code, message)) =
                        self.send_tagged(member, &running, &internal, out).await
                    {
                        self.to_client(
                            jsonrpc::error_response(Some(id), code, &message, None),
                            None,
                        );
                    }
                    return Ok(());
                }
                // Anything else may start backends: never hold up the client's
                // other messages behind one.
                let (id, method) = (id.clone(), method.to_string());
                if let Some(me) = self.me.upgrade() {
                    tokio::spawn(async move {
                        let answer = me.request(&id, &method, msg).await;
                        if let Some(a) = answer {
                            me.to_client(a, None);
                        }
                    });
                }
                Ok(())
            }
            Kind::Response { id: Some(id) } => {
                let target = self.state().server_requests.remove(id.as_json());
                if let Some((member, original)) = target
                    && let Some(m) = jsonrpc::with_id(&msg, &original)
                {
                    self.send_to(member, m).await;
                }
                Ok(())
            }
            Kind::Response { id: None } => Ok(()),
            Kind::Notification { method } => {
                match &**method {
                    "notifications/cancelled" => self.client_cancelled(&msg).await,
                    "notifications/roots/list_changed" => {
                        let running: Vec<usize> = self.state().running.keys().copied().collect();
                        for m in running {
                            self.send_to(m, msg.clone()).await;
                        }
                    }
                    // Members get their own `initialized` after their handshake.
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// The answer to one client request, when the gateway gives it (`None`
    /// when a member will).
    async fn request(&self, id: &RequestId, method: &str, msg: Message) -> Option<Message> {
        let params = || -> Value {
            serde_json::from_slice::<Value>(&msg.raw)
                .ok()
                .and_then(|mut v| v.get_mut("params").map(Value::take))
                .unwrap_or(Value::Null)
        };
        let outcome: Result<Option<String>, Refusal> = match method {
            "initialize" => self.initialize(params()).await.map(Some),
            "ping" => Ok(Some("{}".into())),
            "logging/setLevel" => {
                let p = params();
                self.state().log_level = Some(p.clone());
                let running: Vec<usize> = self.state().running.keys().copied().collect();
                for m in running {
                    let _ = self.call(m, "logging/setLevel", p.clone()).await;
                }
                Ok(Some("{}".into()))
            }
            _ => match ListKind::of_method(method) {
                Some(kind) => self.list(kind, &params()).await.map(Some),
                None => self.route(id, method, &msg).await.map(|()| None),
            },
        };
        match outcome {
            Ok(Some(result)) => Some(jsonrpc::raw_result_response(id, &result)),
            Ok(None) => None,
            Err((code, message)) => Some(jsonrpc::error_response(Some(id), code, &message, None)),
        }
    }

    async fn initialize(&self, params: Value) -> Result<String, Refusal> {
        self.state().client_init = Some(params.clone());
        if !self.prefixed {
            // A governed service: its own answer, as if it were not governed.
            let r = self
                .member(0)
                .await
                .map_err(|e| (code::BACKEND_UNAVAILABLE, e))?;
            return Ok(r.init.to_string());
        }
        // Services this person can use nothing of say nothing here either.
        let catalogs: Vec<Option<Arc<Catalog>>> = self
            .catalogs()
            .await
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.filter(|c| self.visible(i, c)))
            .collect();
        let version = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .filter(|v| crate::jsonrpc::SUPPORTED_VERSIONS.contains(v))
            .unwrap_or(crate::jsonrpc::SUPPORTED_VERSIONS[0]);
        let has = |cap: &str| {
            catalogs
                .iter()
                .flatten()
                .any(|c| c.capability(cap).is_some())
        };
        let mut caps = json!({"tools": {"listChanged": true}});
        if has("prompts") {
            caps["prompts"] = json!({"listChanged": true});
        }
        if has("resources") {
            let subscribe = catalogs
                .iter()
                .flatten()
                .any(|c| c.capability("resources/subscribe") == Some(&Value::Bool(true)));
            caps["resources"] = json!({"listChanged": true, "subscribe": subscribe});
        }
        if has("completions") {
            caps["completions"] = json!({});
        }
        if has("logging") {
            caps["logging"] = json!({});
        }
        let mut instructions = format!(
            "Tools and prompts of several services, named <service>{}<name>.",
            self.access.delimiter
        );
        for (i, c) in catalogs.iter().enumerate() {
            if let Some(text) = c
                .as_ref()
                .and_then(|c| c.init.get("instructions"))
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
            {
                instructions.push_str(&format!("\n\n## {}\n{}", self.members[i].name, text.trim()));
            }
        }
        Ok(json!({
            "protocolVersion": version,
            "capabilities": caps,
            "serverInfo": {"name": format!("mcpgate ({})", crate::config::endpoint_path(&self.name, "mcp")), "version": env!("CARGO_PKG_VERSION")},
            "instructions": instructions,
        })
        .to_string())
    }

    /// Whether the person may use anything the member offers.
    fn visible(&self, member: usize, c: &Catalog) -> bool {
        let service = self.members[member].name.as_str();
        ListKind::ALL.iter().any(|k| {
            c.items(*k).iter().any(|item| {
                self.access.policy.allows(
                    self.caller.as_deref(),
                    service,
                    k.item_kind(),
                    &item.name,
                )
            })
        })
    }

    /// Every member's catalog, fetched in parallel (`None` for those that failed).
    async fn catalogs(&self) -> Vec<Option<Arc<Catalog>>> {
        let all = (0..self.members.len()).map(|i| async move {
            match self.catalog(i).await {
                Ok(c) => Some(c),
                Err(why) => {
                    tracing::debug!(endpoint = self.name, service = %self.members[i].name, "left out: {why}");
                    None
                }
            }
        });
        futures_util::future::join_all(all).await
    }

    /// One list, filtered by policy, one page at a time.
    async fn list(&self, kind: ListKind, params: &Value) -> Result<String, Refusal> {
        let offset = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(c) => c.as_str().and_then(|c| c.parse::<usize>().ok()).ok_or((
                code::INVALID_PARAMS,
                "Invalid params: unknown cursor".to_string(),
            ))?,
        };
        let catalogs = self.catalogs().await;
        let down: Vec<usize> = {
            let st = self.state();
            let now = Instant::now();
            st.down
                .iter()
                .filter(|(_, (until, _))| *until > now)
                .map(|(m, _)| *m)
                .collect()
        };
        let page = self.access.page_size;
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("{\"");
        out.push_str(kind.field());
        out.push_str("\":[");
        let (mut seen, mut written) = (0usize, 0usize);
        let mut more = false;
        'members: for (i, c) in catalogs.iter().enumerate() {
            let Some(c) = c else { continue };
            if down.contains(&i) {
                continue;
            }
            let service = self.members[i].name.as_str();
            for item in c.items(kind) {
                let text = if self.prefixed {
                    match &item.prefixed {
                        Some(t) => t,
                        None => continue,
                    }
                } else {
                    &item.plain
                };
                if !self.access.policy.allows(
                    self.caller.as_deref(),
                    service,
                    kind.item_kind(),
                    &item.name,
                ) {
                    continue;
                }
                seen += 1;
                if seen <= offset {
                    continue;
                }
                if written == page {
                    more = true;
                    break 'members;
                }
                if written > 0 {
                    out.push(',');
                }
                out.push_str(text);
                written += 1;
            }
        }
        out.push(']');
        if more {
            out.push_str(&format!(",\"nextCursor\":\"{}\"", offset + written));
        }
        out.push('}');
        Ok(out)
    }

    /// Which member a name belongs to, and its name there.
    fn owner<'a>(&self, kind: ItemKind, full: &'a str) -> Option<(usize, &'a str)> {
        if !self.prefixed {
            return Some((0, full));
        }
        match kind {
            ItemKind::Tool | ItemKind::Prompt => {
                self.members.iter().enumerate().find_map(|(i, s)| {
                    names::strip(s.name.as_str(), &self.access.delimiter, full).map(|n| (i, n))
                })
            }
            ItemKind::Resource => {
                let (svc, uri) = names::split_uri(full)?;
                let i = self.members.iter().position(|s| s.name.as_str() == svc)?;
                Some((i, uri))
            }
        }
    }

    /// Forward a request that acts on one item (a tool, prompt or resource) to
    /// its member, after the policy and existence checks.
    async fn route(&self, id: &RequestId, method: &str, msg: &Message) -> Result<(), Refusal> {
        let mut v: Value = serde_json::from_slice(&msg.raw)
            .map_err(|_| (code::INVALID_REQUEST, "Invalid Request".to_string()))?;
        let (kind, pointer) = match method {
            "tools/call" => (ItemKind::Tool, "/params/name"),
            "prompts/get" => (ItemKind::Prompt, "/params/name"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                (ItemKind::Resource, "/params/uri")
            }
            "completion/complete" => match v.pointer("/params/ref/type").and_then(Value::as_str) {
                Some("ref/prompt") => (ItemKind::Prompt, "/params/ref/name"),
                Some("ref/resource") => (ItemKind::Resource, "/params/ref/uri"),
                _ => {
                    return Err((
                        code::INVALID_PARAMS,
                        "Invalid params: completion/complete needs ref.type ref/prompt or ref/resource".into(),
                    ));
                }
            },
            // A governed service: the task methods carry no item names (a task
            // is only ever made by a call that was checked). Anything else is
            // refused rather than passed on unchecked.
            "tasks/get" | "tasks/list" | "tasks/result" | "tasks/cancel" if !self.prefixed => {
                return self.forward(0, id, v, false).await;
            }
            _ => {
                return Err((
                    code::METHOD_NOT_FOUND,
                    format!("Method not found: {method}"),
                ));
            }
        };
        let full = v
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                (
                    code::INVALID_PARAMS,
                    format!(
                        "Invalid params: {method} needs {}",
                        &pointer[8..].replace('/', ".")
                    ),
                )
            })?
            .to_string();
        let unknown = || -> Refusal {
            match kind {
                ItemKind::Tool => (code::INVALID_PARAMS, format!("Unknown tool: {full}")),
                ItemKind::Prompt => (code::INVALID_PARAMS, format!("Unknown prompt: {full}")),
                ItemKind::Resource => (
                    code::RESOURCE_NOT_FOUND,
                    format!("Resource not found: {full}"),
                ),
            }
        };
        let (member, local) = self.owner(kind, &full).ok_or_else(unknown)?;
        let service = self.members[member].name.as_str();
        if !self
            .access
            .policy
            .allows(self.caller.as_deref(), service, kind, local)
        {
            let shown: String = local.chars().take(128).collect();
            tracing::info!(endpoint = self.name, service, caller = %self.caller.as_deref().map_or_else(|| "anonymous".to_string(), |c| c.to_string()), item = ?shown, "refused by policy");
            return Err(unknown());
        }
        if !self.exists(member, kind, local).await {
            return Err(unknown());
        }
        if let Some(p) = v.pointer_mut(pointer) {
            *p = Value::String(local.to_string());
        }
        self.forward(member, id, v, self.prefixed && method == "resources/read")
            .await
    }

    /// Whether the member offers this tool, prompt or resource.
    ///
    /// Only the cached lists are asked: a call can never make the gateway
    /// refetch them (which would let one session refill what others see, and
    /// let timing tell a hidden tool from a missing one). A service that adds
    /// tools says so with `list_changed`; otherwise they appear within `cacheTtl`.
    async fn exists(&self, member: usize, kind: ItemKind, name: &str) -> bool {
        self.catalog(member).await.is_ok_and(|c| c.has(kind, name))
    }

    async fn forward(
        &self,
        member: usize,
        client_id: &RequestId,
        v: Value,
        rename_contents: bool,
    ) -> Result<(), Refusal> {
        let running = self
            .member(member)
            .await
            .map_err(|e| (code::BACKEND_UNAVAILABLE, e))?;
        {
            let mut st = self.state();
            if let Some(i) = st.cancelled_early.iter().position(|c| c == client_id) {
                st.cancelled_early.remove(i);
                return Ok(());
            }
        }
        let (internal, msg) = self
            .tag(member, client_id, v, rename_contents)
            .ok_or((code::INVALID_REQUEST, "Invalid Request".to_string()))?;
        self.send_tagged(member, &running, &internal, msg).await
    }

    /// Give a request its member-side id and remember whose it is.
    fn tag(
        &self,
        member: usize,
        client_id: &RequestId,
        mut v: Value,
        rename_contents: bool,
    ) -> Option<(RequestId, Message)> {
        let seq = self.next();
        let internal = internal_id(seq);
        v["id"] = jsonrpc::id_value(&internal);
        let msg = jsonrpc::from_value(&v)?;
        self.state().forwarded.insert(
            internal.clone(),
            Forward {
                member,
                client_id: client_id.clone(),
                rename_contents,
                seq,
            },
        );
        Some((internal, msg))
    }

    async fn send_tagged(
        &self,
        member: usize,
        running: &Running,
        internal: &RequestId,
        msg: Message,
    ) -> Result<(), Refusal> {
        if let Err(e) = running.backend.send(msg).await {
            self.state().forwarded.remove(internal);
            return Err((
                code::BACKEND_UNAVAILABLE,
                format!("{} is unavailable: {e}", self.members[member].name),
            ));
        }
        Ok(())
    }

    /// The common case without a task hop: a tool call or prompt whose member
    /// is running and whose list is cached is checked and forwarded at once.
    /// `None` when anything would need waiting (or refusing): the full path
    /// then decides.
    fn quick(
        &self,
        id: &RequestId,
        method: &str,
        msg: &Message,
    ) -> Option<(usize, Arc<Running>, RequestId, Message)> {
        let kind = match method {
            "tools/call" => ItemKind::Tool,
            "prompts/get" => ItemKind::Prompt,
            _ => return None,
        };
        let call = NamedCall::parse(&msg.raw)?;
        let full = call.name()?;
        let (member, local) = self.owner(kind, &full)?;
        let service = self.members[member].name.as_str();
        if !self
            .access
            .policy
            .allows(self.caller.as_deref(), service, kind, local)
        {
            return None;
        }
        let seq = self.next();
        let internal = internal_id(seq);
        let out = call.rebuild(&internal, method, local)?;
        let mut st = self.state();
        let running = st.running.get(&member).filter(|r| !r.expiring()).cloned()?;
        // The lists this session goes by (see `catalog`).
        let known = match st.local.get(&member) {
            Some(c) => c.has(kind, local),
            None if running.pristine.load(Ordering::Acquire) => self
                .access
                .catalogs
                .get(self.cache_key(member))
                .is_some_and(|c| c.has(kind, local)),
            None => false,
        };
        if !known {
            return None;
        }
        st.forwarded.insert(
            internal.clone(),
            Forward {
                member,
                client_id: id.clone(),
                rename_contents: false,
                seq,
            },
        );
        Some((member, running, internal, out))
    }

    async fn client_cancelled(&self, msg: &Message) {
        let Some(v) = serde_json::from_slice::<Value>(&msg.raw).ok() else {
            return;
        };
        let Some(cancelled) = v
            .pointer("/params/requestId")
            .and_then(jsonrpc::id_from_value)
        else {
            return;
        };
        let found = {
            let mut st = self.state();
            let key = st
                .forwarded
                .iter()
                .find(|(_, f)| f.client_id == cancelled)
                .map(|(k, f)| (k.clone(), f.member));
            match &key {
                Some((k, _)) => {
                    st.forwarded.remove(k);
                }
                // Not forwarded yet (its member may be starting): it never will be.
                None => {
                    if st.cancelled_early.len() >= 64 {
                        st.cancelled_early.pop_front();
                    }
                    st.cancelled_early.push_back(cancelled.clone());
                }
            }
            key
        };
        if let Some((internal, member)) = found {
            let mut out = v.clone();
            out["params"]["requestId"] = jsonrpc::id_value(&internal);
            if let Some(m) = jsonrpc::from_value(&out) {
                self.send_to(member, m).await;
            }
        }
    }

    async fn send_to(&self, member: usize, msg: Message) {
        let running = self.state().running.get(&member).cloned();
        if let Some(r) = running {
            let _ = Box::pin(r.backend.send(msg)).await;
        }
    }

    // ---- members ----------------------------------------------------------------

    /// The member's catalog. Shared with every session (per person where the
    /// backend depends on the person) while the member is as any other
    /// session's would be; once it has said its lists changed (e.g. a toolset
    /// switched on), this session keeps its own, so one person's session never
    /// changes what others see.
    async fn catalog(&self, member: usize) -> Result<Arc<Catalog>, String> {
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
    async fn fetch_list(&self, member: usize, kind: ListKind) -> Result<Vec<Value>, String> {
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
    async fn call(&self, member: usize, method: &str, params: Value) -> Result<Value, String> {
        let running = self.member(member).await?;
        self.call_on(member, &running.backend, method, params).await
    }

    async fn call_on(
        &self,
        member: usize,
        backend: &Route,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let svc = &self.members[member];
        let id = jsonrpc::string_id(&format!("mcpgate-{}", self.next()));
        let key = id.as_json().to_string();
        let (tx, rx) = oneshot::channel();
        self.state().internal.insert(key.clone(), (member, tx));
        let msg = jsonrpc::from_value(&json!({
            "jsonrpc": "2.0", "id": jsonrpc::id_value(&id),
            "method": method, "params": params,
        }))
        .ok_or("cannot build the request")?;
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
                return Err(format!("{}: {e}", svc.name));
            }
        };
        let answer = match answer {
            Ok(Ok(a)) => a,
            // The waiter was dropped: the member stopped.
            Ok(Err(_)) => return Err(format!("{} stopped before answering {method}", svc.name)),
            Err(_) => {
                self.state().internal.remove(&key);
                return Err(format!(
                    "{} did not answer {method} within {:?}",
                    svc.name, timeout
                ));
            }
        };
        let mut v: Value = serde_json::from_slice(&answer.raw).map_err(|e| e.to_string())?;
        if let Some(e) = v.get("error") {
            let text = e.get("message").and_then(Value::as_str).unwrap_or("error");
            return Err(format!(
                "{} answered {method} with an error: {text}",
                svc.name
            ));
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// The member, started (and initialized) if it is not running, or
    /// restarted when the person's upstream token it runs with is about to
    /// expire (it must never be sent expired).
    async fn member(&self, member: usize) -> Result<Arc<Running>, String> {
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
                return Err(why.clone());
            }
        }
        if self.closed.load(Ordering::Acquire) {
            return Err("the session is closed".into());
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
                Err(format!("stopped while starting: {reason}"))
            }
            (other, _) => other,
        };
        match started {
            Ok(r) => {
                if self.closed.load(Ordering::Acquire) {
                    Box::pin(r.backend.close()).await;
                    return Err("the session is closed".into());
                }
                let mut st = self.state();
                st.down.remove(&member);
                st.running.insert(member, r.clone());
                Ok(r)
            }
            Err(why) => {
                let why = format!("{} is unavailable: {why}", svc.name);
                tracing::warn!(endpoint = self.name, service = %svc.name, "{why}; tried again in {RETRY_AFTER:?}");
                // /ready is public: no person's reasons there.
                if !svc.per_user {
                    svc.stats.record_error(why.clone());
                }
                self.state()
                    .down
                    .insert(member, (Instant::now() + RETRY_AFTER, why.clone()));
                Err(why)
            }
        }
    }

    async fn start(&self, member: usize, generation: u64) -> Result<Arc<Running>, String> {
        let svc = self.members[member].clone();
        let token = self
            .access
            .token_for(&svc, self.caller.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let expires_at = token.as_ref().and_then(|t| t.expires_at);
        // Each member counts as a session of its service (maxSessions).
        if !svc.stats.try_open_session(svc.limits.max_sessions) {
            return Err(format!(
                "the service has reached its limit of {} open sessions (mcpServers.{}.maxSessions)",
                svc.limits.max_sessions, svc.name
            ));
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
        .map_err(|_| format!("did not start within {:?}", svc.limits.startup_timeout))?
        .map_err(|e| e.to_string())?;
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
            expires_at,
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
    fn drop_member(&self, st: &mut State, member: usize) -> Option<(Arc<Running>, Vec<RequestId>)> {
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
    fn fail(&self, ids: &[RequestId], why: &str) {
        for id in ids {
            self.to_client(
                jsonrpc::error_response(Some(id), code::BACKEND_UNAVAILABLE, why, None),
                None,
            );
        }
    }

    /// A member's backend is gone: its requests fail, it drops out of the
    /// lists, and it is tried again after a pause.
    fn member_down(&self, member: usize, generation: u64, reason: String) {
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

    fn lists_changed(&self, kinds: &[ListKind]) {
        for k in kinds {
            let method = match k {
                ListKind::Tools => "notifications/tools/list_changed",
                ListKind::Prompts => "notifications/prompts/list_changed",
                ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
            };
            self.to_client(jsonrpc::notification(method, json!({})), None);
        }
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
    pub async fn discover(&self, member: usize) -> Result<Arc<Catalog>, String> {
        self.catalog(member).await
    }

    /// Whether this aggregate has a member of that name.
    pub fn has_member(&self, service: &str) -> bool {
        self.members.iter().any(|s| s.name.as_str() == service)
    }

    // ---- from members -------------------------------------------------------------

    fn on_member_message(
        &self,
        member: usize,
        generation: u64,
        msg: Message,
        related: Option<RequestId>,
    ) {
        let svc = self.members[member].name.as_str();
        // One lock for the common case (an answer): is the member current, and
        // whose request is this.
        let mut st = self.state();
        if st
            .running
            .get(&member)
            .is_some_and(|r| r.generation != generation)
        {
            return;
        }
        match &msg.kind {
            Kind::Response { id: Some(id) } => {
                let (waiter, forward) = match st.internal.remove(id.as_json()) {
                    Some(w) => (Some(w), None),
                    None => (None, st.forwarded.remove(id)),
                };
                drop(st);
                if let Some(w) = waiter {
                    let _ = w.1.send(msg);
                    return;
                }
                let Some(f) = forward else {
                    tracing::debug!(service = svc, "an answer to an unknown request {id}");
                    return;
                };
                let out = if f.rename_contents {
                    serde_json::from_slice::<Value>(&msg.raw)
                        .ok()
                        .and_then(|mut v| {
                            v["id"] = jsonrpc::id_value(&f.client_id);
                            if let Some(Value::Array(items)) = v.pointer_mut("/result/contents") {
                                for item in items {
                                    if let Some(u) = item.get("uri").and_then(Value::as_str) {
                                        item["uri"] = Value::String(names::prefixed_uri(svc, u));
                                    }
                                }
                            }
                            jsonrpc::from_value(&v)
                        })
                } else {
                    jsonrpc::with_id(&msg, &f.client_id)
                };
                if let Some(m) = out {
                    self.to_client(m, None);
                }
            }
            Kind::Response { id: None } => {}
            Kind::Request { id, .. } => {
                drop(st);
                let outward = jsonrpc::string_id(&format!("mcpgate-{svc}-{}", self.next()));
                {
                    let mut st = self.state();
                    // Requests the client never answers must not pile up.
                    if st.server_requests.len() >= MAX_SERVER_REQUESTS {
                        tracing::warn!(
                            endpoint = self.name,
                            "too many unanswered server requests; forgetting them"
                        );
                        st.server_requests.clear();
                    }
                    st.server_requests
                        .insert(outward.as_json().to_string(), (member, id.clone()));
                }
                let related = self.client_id_of(member, related);
                if let Some(m) = jsonrpc::with_id(&msg, &outward) {
                    self.to_client(m, related);
                }
            }
            Kind::Notification { method } => {
                drop(st);
                let related = self.client_id_of(member, related);
                if ListKind::of_notification(method).is_some() {
                    // Its lists are now this session's own (see `catalog`).
                    {
                        let mut st = self.state();
                        st.local.remove(&member);
                        if let Some(r) = st.running.get(&member) {
                            r.pristine.store(false, Ordering::Release);
                        }
                    }
                    self.to_client(msg, related);
                    return;
                }
                let rewritten = match &**method {
                    "notifications/resources/updated" => serde_json::from_slice::<Value>(&msg.raw)
                        .ok()
                        .and_then(|mut v| {
                            let uri = v.pointer("/params/uri")?.as_str()?.to_string();
                            // Nothing about a resource the person may not see.
                            if !self.access.policy.allows(
                                self.caller.as_deref(),
                                svc,
                                ItemKind::Resource,
                                &uri,
                            ) {
                                return None;
                            }
                            if self.prefixed {
                                v["params"]["uri"] = Value::String(names::prefixed_uri(svc, &uri));
                            }
                            jsonrpc::from_value(&v)
                        }),
                    "notifications/cancelled" => {
                        // The member gives up on one of its own requests.
                        serde_json::from_slice::<Value>(&msg.raw)
                            .ok()
                            .and_then(|mut v| {
                                let theirs = v.pointer("/params/requestId")?.to_string();
                                let mut st = self.state();
                                let ours = st
                                    .server_requests
                                    .iter()
                                    .find(|(_, (m, orig))| *m == member && orig.as_json() == theirs)
                                    .map(|(k, _)| k.clone())?;
                                st.server_requests.remove(&ours);
                                drop(st);
                                v["params"]["requestId"] = serde_json::from_str(&ours).ok()?;
                                jsonrpc::from_value(&v)
                            })
                    }
                    _ => Some(msg),
                };
                if let Some(m) = rewritten {
                    self.to_client(m, related);
                }
            }
        }
    }

    /// The client request a member's message belongs to: the one the member
    /// names, else (stdio cannot name one) the member's latest request in
    /// flight, so its sampling or elicitation reaches the stream of the call
    /// that caused it rather than another service's.
    fn client_id_of(&self, member: usize, member_id: Option<RequestId>) -> Option<RequestId> {
        let st = self.state();
        if let Some(f) = member_id.and_then(|id| st.forwarded.get(&id)) {
            return Some(f.client_id.clone());
        }
        st.forwarded
            .values()
            .filter(|f| f.member == member)
            .max_by_key(|f| f.seq)
            .map(|f| f.client_id.clone())
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

/// A `tools/call` or `prompts/get` as the fast path reads it: where its id
/// and its `params.name` are in the bytes, so both can be replaced without
/// parsing (or copying piecemeal) anything else. A message with a repeated
/// `params` or `name` does not fit this shape and takes the full path.
struct NamedCall<'a> {
    raw: &'a [u8],
    id: &'a serde_json::value::RawValue,
    name: &'a serde_json::value::RawValue,
}

impl<'a> NamedCall<'a> {
    fn parse(raw: &'a [u8]) -> Option<NamedCall<'a>> {
        use serde_json::value::RawValue;
        #[derive(serde::Deserialize)]
        struct Shape<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
            #[serde(borrow)]
            params: Params<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            name: &'a RawValue,
        }
        let shape: Shape = serde_json::from_slice(raw).ok()?;
        Some(NamedCall {
            raw,
            id: shape.id,
            name: shape.params.name,
        })
    }

    fn name(&self) -> Option<std::borrow::Cow<'a, str>> {
        serde_json::from_str(self.name.get()).ok()
    }

    /// The same request under `id`, calling `name`.
    fn rebuild(&self, id: &RequestId, method: &str, name: &str) -> Option<Message> {
        let name_json = serde_json::to_string(name).ok()?;
        let out = jsonrpc::splice(
            self.raw,
            &mut [
                (jsonrpc::span(self.raw, self.id)?, id.as_json().as_bytes()),
                (jsonrpc::span(self.raw, self.name)?, name_json.as_bytes()),
            ],
        )?;
        Some(Message {
            raw: bytes::Bytes::from(out),
            kind: Kind::Request {
                id: id.clone(),
                method: method.into(),
            },
        })
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
        let call = NamedCall::parse(raw).unwrap();
        assert_eq!(call.name().unwrap(), "s0_echo");
        let out = call.rebuild(&internal_id(5), "tools/call", "echo").unwrap();
        let v: Value = serde_json::from_slice(&out.raw).unwrap();
        assert_eq!(v["id"], "mcpgate-5");
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"]["name"], "keep");
        assert_eq!(v["params"]["_meta"]["progressToken"], 3);
        // A repeated name does not fit the fast path.
        assert!(NamedCall::parse(br#"{"id":1,"params":{"name":"a","name":"b"}}"#).is_none());

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
