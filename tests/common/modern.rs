//! A 2026-07-28 client written out on the wire, for the tests of both
//! directions of the bridge.

use serde_json::{Value, json};

/// A 2026-07-28 client written out on the wire: one POST per request.
pub struct Modern {
    pub url: String,
    pub bearer: Option<String>,
    pub capabilities: Value,
    next: u64,
}

impl Modern {
    pub fn new(url: String, bearer: Option<&str>) -> Modern {
        Modern {
            url,
            bearer: bearer.map(str::to_string),
            capabilities: json!({"elicitation": {}, "sampling": {}}),
            next: 0,
        }
    }

    /// The final answer (from JSON or the last SSE event) and the HTTP status.
    pub async fn request(&mut self, method: &str, params: Value) -> (u16, Value) {
        self.next += 1;
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        let mut req = super::http()
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            req = req.header("mcp-name", name);
        }
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        let body = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        let r = req.body(body.to_string()).send().await.expect("sent");
        let status = r.status().as_u16();
        let sse = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let text = r.text().await.expect("body");
        let answer = if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .rfind(|v| v.get("id").is_some())
                .expect("an answer on the stream")
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, answer)
    }

    pub async fn call(&mut self, tool: &str, extra: Value) -> Value {
        let mut params = json!({"name": tool, "arguments": {}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                params[k] = v.clone();
            }
        }
        self.request("tools/call", params).await.1
    }
}
