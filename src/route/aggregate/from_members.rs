//! Messages from members: answers re-addressed to the client's ids, their
//! own requests (sampling, elicitation, roots) given ids of the gateway's,
//! notifications renamed or filtered by policy.

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::catalog::ListKind;
use super::*;
use crate::jsonrpc::{self, Kind, Message, RequestId};
use crate::policy::ItemKind;

impl Aggregate {
    pub(super) fn on_member_message(
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
                // The member's own id (prefixed with its service where there
                // are several), so a 2026-07-28 client sees the name a server
                // gave its question as the input request's key; one of ours
                // if another request waiting uses it.
                let own = if self.prefixed {
                    let text = match jsonrpc::id_value(id) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    jsonrpc::string_id(&names::prefixed(svc, &self.access.delimiter, &text))
                } else {
                    id.clone()
                };
                let outward = if st.server_requests.contains_key(own.as_json()) {
                    jsonrpc::string_id(&format!("mcpgate-{svc}-{}", self.next()))
                } else {
                    own
                };
                {
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
                drop(st);
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
    pub(super) fn client_id_of(
        &self,
        member: usize,
        member_id: Option<RequestId>,
    ) -> Option<RequestId> {
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
}
