//! Messages from the client: requests answered by the gateway itself or
//! routed to a member, notifications (cancellations) and the client's answers
//! to members' requests.

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::catalog::ListKind;
use super::*;
use crate::jsonrpc::{self, Kind, Message, RequestId};

impl Aggregate {
    pub(super) async fn send_inner(&self, msg: Message) -> Result<(), BackendError> {
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
    pub(super) async fn request(
        &self,
        id: &RequestId,
        method: &str,
        msg: Message,
    ) -> Option<Message> {
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

    pub(super) async fn client_cancelled(&self, msg: &Message) {
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

    pub(super) async fn send_to(&self, member: usize, msg: Message) {
        let running = self.state().running.get(&member).cloned();
        if let Some(r) = running {
            let _ = Box::pin(r.backend.send(msg)).await;
        }
    }
}
