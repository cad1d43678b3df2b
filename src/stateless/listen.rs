//! `subscriptions/listen`: the notifications a 2026-07-28 client asked for,
//! from its kept backend session, on one SSE stream. The first event
//! acknowledges the subscription; every event carries the listen request's id
//! as `subscriptionId`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::pool::Kept;
use super::request::Modern;
use crate::jsonrpc::{self, RequestId};

use crate::wire2026::META_SUBSCRIPTION_ID as SUBSCRIPTION_ID;

/// What the client asked to hear about.
struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Filter {
    fn of(req: &Modern) -> Filter {
        let n = req
            .params
            .get("notifications")
            .cloned()
            .unwrap_or(Value::Null);
        let flag = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false);
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris: n
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn wants(&self, v: &Value) -> bool {
        match v.get("method").and_then(Value::as_str) {
            Some("notifications/tools/list_changed") => self.tools,
            Some("notifications/prompts/list_changed") => self.prompts,
            Some("notifications/resources/list_changed") => self.resources,
            Some("notifications/resources/updated") => v
                .pointer("/params/uri")
                .and_then(Value::as_str)
                .is_some_and(|u| self.uris.iter().any(|s| s == u)),
            _ => false,
        }
    }
}

/// The listen stream's events (JSON-RPC notifications, not yet SSE-framed).
/// `None` when the backend session cannot be listened to.
pub async fn listen(
    kept: Arc<Kept>,
    req: &Modern,
    id: RequestId,
) -> Option<impl Stream<Item = Bytes> + use<>> {
    let filter = Filter::of(req);
    let rx = kept.session.notices()?;
    // Resource subscriptions are per session in the session era: subscribe the
    // kept session to each uri the client names.
    if kept.init.pointer("/capabilities/resources/subscribe") == Some(&json!(true)) {
        for uri in &filter.uris {
            let sub_id = kept.next_id();
            if let Some(m) =
                jsonrpc::from_value(&json!({"jsonrpc": "2.0", "id": jsonrpc::id_value(&sub_id),
                "method": "resources/subscribe", "params": {"uri": uri}}))
            {
                let _ = kept.session.submit(vec![m]).await;
            }
        }
    }
    let tag = jsonrpc::id_value(&id);
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": req.params.get("notifications").cloned().unwrap_or_else(|| json!({})),
                   "_meta": {SUBSCRIPTION_ID: tag}}});
    let first = Bytes::from(ack.to_string());
    let rest =
        futures_util::stream::unfold((rx, filter, tag), |(mut rx, filter, tag)| async move {
            loop {
                match rx.recv().await {
                    Ok(raw) => {
                        let Ok(mut v) = serde_json::from_slice::<Value>(&raw) else {
                            continue;
                        };
                        if !filter.wants(&v) {
                            continue;
                        }
                        tagged(&mut v, &tag);
                        return Some((Bytes::from(v.to_string()), (rx, filter, tag)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            "a subscriptions/listen stream fell behind and missed {n} notifications"
                        );
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
    Some(futures_util::StreamExt::chain(
        futures_util::stream::once(async move { first }),
        rest,
    ))
}

fn tagged(v: &mut Value, tag: &Value) {
    if !v.get("params").is_some_and(Value::is_object) {
        v["params"] = json!({});
    }
    let params = &mut v["params"];
    if !params.get("_meta").is_some_and(Value::is_object) {
        params["_meta"] = json!({});
    }
    params["_meta"][SUBSCRIPTION_ID] = tag.clone();
}
