//! A session-era backend's answer, reshaped for a 2026-07-28 client: the
//! client's own id, `resultType`, cache hints on lists and reads, and the
//! 2026-07-28 code for a resource that is not there.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::jsonrpc::{RequestId, code};

/// How long a client may reuse a list or a read (ms). Short: a policy reload
/// or a person's new token can change what they see, and calls are authorized
/// when made anyway.
pub const TTL_MS: u64 = 30_000;

/// Methods whose results carry `ttlMs` and `cacheScope`.
const CACHED: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "server/discover",
];

/// The answer for the client, and its HTTP status.
pub fn answer(
    raw: &[u8],
    client_id: &RequestId,
    method: &str,
    target: Option<&str>,
    scope: &str,
) -> (Bytes, u16) {
    let Ok(mut v) = serde_json::from_slice::<Value>(raw) else {
        let e = crate::jsonrpc::error_response(
            Some(client_id),
            code::BACKEND_UNAVAILABLE,
            "the backend's answer is not JSON",
            None,
        );
        return (e.raw, 502);
    };
    v["id"] = crate::jsonrpc::id_value(client_id);
    if let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| json!("complete"));
        if CACHED.contains(&method) {
            result.entry("ttlMs").or_insert_with(|| json!(TTL_MS));
            result.entry("cacheScope").or_insert_with(|| json!(scope));
        }
    } else if let Some(error) = v.get_mut("error").and_then(Value::as_object_mut)
        && error.get("code").and_then(Value::as_i64) == Some(code::RESOURCE_NOT_FOUND)
    {
        // 2026-07-28 folds "resource not found" into invalid params, with the uri.
        error.insert("code".into(), json!(code::INVALID_PARAMS));
        if let Some(uri) = target {
            let data = error.entry("data").or_insert_with(|| json!({}));
            if let Some(d) = data.as_object_mut() {
                d.entry("uri").or_insert_with(|| json!(uri));
            }
        }
    }
    (Bytes::from(v.to_string()), 200)
}

/// `server/discover`, answered from the backend's `initialize` result.
pub fn discover(init: &Value, scope: &str) -> Value {
    let mut r = json!({
        "resultType": "complete",
        "supportedVersions": crate::jsonrpc::MODERN_VERSIONS,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "ttlMs": TTL_MS,
        "cacheScope": scope,
    });
    if let Some(info) = init.get("serverInfo") {
        r["_meta"] = json!({"io.modelcontextprotocol/serverInfo": info});
    }
    if let Some(i) = init.get("instructions").filter(|i| i.is_string()) {
        r["instructions"] = i.clone();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_get_hints_and_missing_resources_get_the_modern_code() {
        let id = crate::jsonrpc::string_id("c1");
        let (b, s) = answer(
            br#"{"jsonrpc":"2.0","id":"mcpgate-3","result":{"tools":[]}}"#,
            &id,
            "tools/list",
            None,
            "private",
        );
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(s, 200);
        assert_eq!(v["id"], "c1");
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["ttlMs"], TTL_MS);
        let (b, _) = answer(
            br#"{"jsonrpc":"2.0","id":"x","error":{"code":-32002,"message":"nope"}}"#,
            &id,
            "resources/read",
            Some("test://gone"),
            "public",
        );
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "test://gone");
        let (b, _) = answer(
            br#"{"jsonrpc":"2.0","id":"x","result":{"content":[]}}"#,
            &id,
            "tools/call",
            None,
            "public",
        );
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert!(v["result"].get("ttlMs").is_none());
    }
}
