//! Which era a remote server speaks: a `server/discover` probe, as the
//! spec's version negotiation says (a session-era server answers it with an
//! error, and is then spoken to with `initialize`). The finding is kept per
//! service for a while, so sessions do not each pay a round trip.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use url::Url;

use super::VERSION;
use crate::service::Service;

/// How long a finding holds (a server may be upgraded in place).
pub const REMEMBER: Duration = Duration::from_secs(300);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's `server/discover` result when it speaks 2026-07-28.
pub async fn discover(
    service: &Service,
    url: &Url,
    headers: &BTreeMap<String, String>,
) -> Option<Value> {
    if let Some(found) = service.era.get(REMEMBER) {
        return found;
    }
    let Ok(headers) = super::header_map(headers) else {
        return None;
    };
    let body = json!({"jsonrpc": "2.0", "id": "mcpgate-probe", "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}}}});
    let sent = service
        .http
        .post(url.clone())
        .headers(headers)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-method", "server/discover")
        .timeout(PROBE_TIMEOUT)
        .body(body.to_string())
        .send()
        .await;
    // Unreachable: no finding (starting it the session-era way reports why).
    let resp = sent.ok()?;
    let text = resp.text().await.unwrap_or_default();
    let answer: Option<Value> = serde_json::from_str(&text).ok().or_else(|| {
        // An SSE answer: its last data line.
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .rfind(|v| v.get("id").is_some())
    });
    let result = answer.and_then(|a| a.get("result").cloned());
    let modern = result.filter(|r| {
        r.get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x == VERSION))
    });
    tracing::info!(service = %service.name, era = if modern.is_some() { VERSION } else { "session" }, "probed the service's protocol era");
    service.era.set(modern.clone());
    modern
}
