//! Calls to one member (`tools/call`, `prompts/get`, `resources/read`, ...):
//! the owning member found from the name, the policy and existence checks
//! (hidden and missing answered alike), and the request re-addressed under an
//! id of the gateway's. The fast path splices the id and name in place.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::*;
use crate::jsonrpc::{self, Kind, Message, RequestId, code};
use crate::policy::ItemKind;

impl Aggregate {
    /// Which member a name belongs to, and its name there.
    pub(super) fn owner<'a>(&self, kind: ItemKind, full: &'a str) -> Option<(usize, &'a str)> {
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
    pub(super) async fn route(
        &self,
        id: &RequestId,
        method: &str,
        msg: &Message,
    ) -> Result<(), Refusal> {
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
    pub(super) async fn exists(&self, member: usize, kind: ItemKind, name: &str) -> bool {
        self.catalog(member).await.is_ok_and(|c| c.has(kind, name))
    }

    pub(super) async fn forward(
        &self,
        member: usize,
        client_id: &RequestId,
        v: Value,
        rename_contents: bool,
    ) -> Result<(), Refusal> {
        let running = self
            .member(member)
            .await
            .map_err(|e| (code::BACKEND_UNAVAILABLE, e.to_string()))?;
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
    pub(super) fn tag(
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

    pub(super) async fn send_tagged(
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
    pub(super) fn quick(
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
}

/// A `tools/call` or `prompts/get` as the fast path reads it: where its id
/// and its `params.name` are in the bytes, so both can be replaced without
/// parsing (or copying piecemeal) anything else. A message with a repeated
/// `params` or `name` does not fit this shape and takes the full path.
pub(super) struct NamedCall<'a> {
    raw: &'a [u8],
    id: &'a serde_json::value::RawValue,
    name: &'a serde_json::value::RawValue,
}

impl<'a> NamedCall<'a> {
    pub(super) fn parse(raw: &'a [u8]) -> Option<NamedCall<'a>> {
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

    pub(super) fn name(&self) -> Option<std::borrow::Cow<'a, str>> {
        serde_json::from_str(self.name.get()).ok()
    }

    /// The same request under `id`, calling `name`.
    pub(super) fn rebuild(&self, id: &RequestId, method: &str, name: &str) -> Option<Message> {
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
