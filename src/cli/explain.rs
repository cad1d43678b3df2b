//! `mcpgate policy explain`: what one person can reach, and which rule
//! decided each item.
//!
//! Each service that does not depend on the person is started and asked for
//! its tools, prompts and resources, so the answer is about real items, not
//! patterns; a service that does (per-user values or tokens), or that cannot
//! start, is explained by its rules alone.

use std::fmt::Write;
use std::sync::{Arc, Weak};

use crate::backend::{Inbox, InboxRef};
use crate::caller::Caller;
use crate::config::Settings;
use crate::gateway::Gateway;
use crate::jsonrpc::{Message, RequestId};
use crate::policy::{ItemKind, Policy};
use crate::route::aggregate::Aggregate;
use crate::route::aggregate::catalog::ListKind;
use crate::service::Kind;

/// Where the discovery sessions' unsolicited messages go: nowhere.
struct Discard;

impl Inbox for Discard {
    fn deliver(&self, _: Message, _: Option<RequestId>) {}
    fn backend_closed(&self, _: String) {}
}

pub async fn explain(
    settings: Settings,
    caller: &Caller,
    discover: bool,
) -> anyhow::Result<String> {
    let delimiter = settings.aggregate.delimiter.clone();
    let endpoints = settings.aggregate.endpoints.clone();
    let gw = Gateway::new(settings, None)?;
    let policy: &Policy = &gw.settings.policy;
    let mut out = String::new();
    writeln!(out, "Access for {caller}")?;
    let rules: Vec<_> = policy
        .rules_for(Some(caller))
        .map(|r| r.name.clone())
        .collect();
    if rules.is_empty() {
        writeln!(out, "Rules that apply: none")?;
    } else {
        writeln!(out, "Rules that apply: {}", rules.join(", "))?;
    }
    let mut names: Vec<_> = gw
        .services
        .values()
        .filter(|s| matches!(s.kind, Kind::Server(_)))
        .cloned()
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let sink: Arc<dyn Inbox> = Arc::new(Discard);
    for svc in names {
        let name = svc.name.as_str();
        writeln!(out)?;
        let in_aggregates: Vec<String> = endpoints
            .iter()
            .filter(|(_, members)| members.contains(&svc.name))
            .map(|(e, _)| crate::config::endpoint_path(e.as_str(), "mcp"))
            .collect();
        writeln!(
            out,
            "{name} (/{name}/mcp{}{})",
            if in_aggregates.is_empty() {
                ""
            } else {
                "; as "
            },
            if in_aggregates.is_empty() {
                String::new()
            } else {
                format!("{name}{delimiter}* at {}", in_aggregates.join(", "))
            }
        )?;
        if !policy.governs(name) {
            writeln!(
                out,
                "  everything: allowed (no toolFilter, no policy names this service)"
            )?;
            continue;
        }
        for rule in policy.rules_for(Some(caller)) {
            let patterns: Vec<&str> = Policy::patterns_for(rule, name).collect();
            if !patterns.is_empty() {
                writeln!(out, "  rule {:?}: {}", rule.name, patterns.join(", "))?;
            }
        }
        if !discover || svc.per_user {
            writeln!(
                out,
                "  (items not listed: {})",
                if discover {
                    "the service depends on the person's own values or token"
                } else {
                    "--no-discover"
                }
            )?;
            continue;
        }
        let inbox: InboxRef = Arc::downgrade(&sink) as Weak<dyn Inbox>;
        let probe = Aggregate::new(&svc, vec![svc.clone()], false, &gw.routes, inbox, None);
        let found = probe.discover(0).await;
        probe.close().await;
        let catalog = match found {
            Ok(c) => c,
            Err(why) => {
                writeln!(out, "  (items not listed: {why})")?;
                continue;
            }
        };
        for kind in [
            ListKind::Tools,
            ListKind::Prompts,
            ListKind::Resources,
            ListKind::Templates,
        ] {
            let label = match kind.item_kind() {
                ItemKind::Tool => "tool",
                ItemKind::Prompt => "prompt",
                ItemKind::Resource if kind == ListKind::Templates => "template",
                ItemKind::Resource => "resource",
            };
            for item in catalog.items(kind) {
                let d = policy.decide(Some(caller), name, kind.item_kind(), &item.name);
                writeln!(
                    out,
                    "  {} {label} {}: {}",
                    if d.allowed { "allow" } else { "deny " },
                    item.name,
                    d.because
                )?;
            }
        }
    }
    Ok(out)
}
