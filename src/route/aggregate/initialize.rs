//! `initialize`, answered by the gateway: the client's protocol version, the
//! union of what the members can do, and each member's instructions under its
//! name (members the caller can use nothing of are left out).

use std::sync::Arc;

use serde_json::{Value, json};

use super::catalog::Catalog;
use super::*;
use crate::jsonrpc::code;

impl Aggregate {
    pub(super) async fn initialize(&self, params: Value) -> Result<String, Refusal> {
        self.state().client_init = Some(params.clone());
        if !self.prefixed {
            // A governed service: its own answer, as if it were not governed.
            let r = self
                .member(0)
                .await
                .map_err(|e| (code::BACKEND_UNAVAILABLE, e.to_string()))?;
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
}
