//! The four lists, merged across members: filtered by policy, renamed, and
//! paged with the gateway's own cursors.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::catalog::{Catalog, ListKind};
use super::*;
use crate::jsonrpc::code;

impl Aggregate {
    /// Whether the person may use anything the member offers.
    pub(super) fn visible(&self, member: usize, c: &Catalog) -> bool {
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
    pub(super) async fn catalogs(&self) -> Vec<Option<Arc<Catalog>>> {
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
    pub(super) async fn list(&self, kind: ListKind, params: &Value) -> Result<String, Refusal> {
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
}
