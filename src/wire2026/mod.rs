//! What every speaker of MCP 2026-07-28 on HTTP shares, client side: the
//! `_meta` keys, how a name or value goes into a header (`Mcp-Name`,
//! `Mcp-Param-*`), and which tool arguments travel as headers (`x-mcp-header`,
//! SEP-2243), and the session-era face such a server is given (`face`). Used
//! by `backend::modern` (the gateway as a client of a 2026-07-28 server) and
//! `connect` (the bridge as one).

pub mod face;

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use base64::Engine;
use serde_json::{Map, Value};

pub const VERSION: &str = "2026-07-28";
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A value as a header carries it: as it is when it is visible ASCII without
/// surrounding space, else the `=?base64?...?=` form.
pub fn header_text(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ');
    if plain {
        value.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// What `Mcp-Name` says for a request: the tool or prompt name, or the uri.
pub fn name_of<'a>(method: &str, params: &'a Map<String, Value>) -> Option<&'a str> {
    match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        _ => None,
    }
    .and_then(Value::as_str)
}

/// A valid `x-mcp-header` name: token characters, not empty.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Which arguments of each tool go in `Mcp-Param-*` headers, learnt from
/// `tools/list` answers.
#[derive(Default)]
pub struct ParamHeaders(RwLock<HashMap<String, Vec<(String, String)>>>);

impl ParamHeaders {
    /// Learn from a `tools/list` result, and drop the tools whose
    /// `x-mcp-header` is invalid (empty, not a token, on a type other than
    /// string, integer or boolean, or repeated): a client must not call them.
    pub fn learn(&self, result: &mut Map<String, Value>) {
        let Some(Value::Array(tools)) = result.get_mut("tools") else {
            return;
        };
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
            let props = tool
                .pointer("/inputSchema/properties")
                .and_then(Value::as_object);
            let mut pairs = Vec::new();
            let mut seen = BTreeSet::new();
            for (arg, schema) in props.into_iter().flatten() {
                let Some(h) = schema.get("x-mcp-header") else {
                    continue;
                };
                let Some(h) = h.as_str().filter(|h| valid_header_name(h)) else {
                    return false;
                };
                let primitive = matches!(
                    schema.get("type").and_then(Value::as_str),
                    Some("string" | "integer" | "boolean")
                );
                if !primitive || !seen.insert(h.to_ascii_lowercase()) {
                    return false;
                }
                pairs.push((arg.clone(), h.to_string()));
            }
            map.insert(name.to_string(), pairs);
            true
        });
    }

    /// The `Mcp-Param-*` headers of a request (only `tools/call` has them);
    /// null or absent arguments are left out.
    pub fn for_request(&self, method: &str, params: &Map<String, Value>) -> Vec<(String, String)> {
        if method != "tools/call" {
            return Vec::new();
        }
        let Some(tool) = params.get("name").and_then(Value::as_str) else {
            return Vec::new();
        };
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(pairs) = map.get(tool) else {
            return Vec::new();
        };
        let args = params.get("arguments").and_then(Value::as_object);
        pairs
            .iter()
            .filter_map(|(arg, header)| {
                let value = match args?.get(arg)? {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                Some((format!("Mcp-Param-{header}"), header_text(&value)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_encode_what_a_header_cannot_carry() {
        assert_eq!(header_text("us-west1"), "us-west1");
        assert_eq!(header_text(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            header_text("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_text(""), "=?base64??=");
    }

    #[test]
    fn tools_with_invalid_header_params_are_dropped_and_the_rest_mirrored() {
        let p = ParamHeaders::default();
        let mut list = json!({"tools": [
            {"name": "ok", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "n": {"type": "integer", "x-mcp-header": "N"},
                "plain": {"type": "string"}}}},
            {"name": "float", "inputSchema": {"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}},
            {"name": "empty", "inputSchema": {"properties": {"x": {"type": "string", "x-mcp-header": ""}}}},
            {"name": "twice", "inputSchema": {"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"},
                "b": {"type": "string", "x-mcp-header": "same"}}}}
        ]});
        let result = list.as_object_mut().expect("object");
        p.learn(result);
        let names: Vec<&str> = result["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["ok"]);
        let params = json!({"name": "ok", "arguments": {"region": "eu", "n": 3, "plain": "x"}});
        let mut h = p.for_request("tools/call", params.as_object().expect("object"));
        h.sort();
        assert_eq!(
            h,
            [
                ("Mcp-Param-N".to_string(), "3".to_string()),
                ("Mcp-Param-Region".to_string(), "eu".to_string())
            ]
        );
        let null = json!({"name": "ok", "arguments": {"region": null}});
        assert!(
            p.for_request("tools/call", null.as_object().expect("object"))
                .is_empty()
        );
    }
}
