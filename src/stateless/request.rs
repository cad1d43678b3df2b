//! One MCP 2026-07-28 request as the client sent it, checked in the order the
//! spec's streamable HTTP transport gives: `_meta` present, headers agree with
//! the body, a version the gateway speaks, a method that exists.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{Map, Value};

use crate::jsonrpc::{self, MODERN_VERSIONS, Message, RequestId, SUPPORTED_VERSIONS, code};

pub const VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
/// The `_meta` keys a 2026-07-28 client sets on every request.
pub use crate::wire2026::{META_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_VERSION};

/// Methods of the 2026-07-28 revision a client may call.
const METHODS: &[&str] = &[
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    // The tasks extension (SEP-2663): carried to the backend, which answers
    // if it offers tasks.
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "tasks/update",
];

/// Methods that may answer with `input_required` (multi-round-trip requests).
pub const MULTI_ROUND: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// A request refused before it reaches a backend: HTTP 400 (404 for an
/// unknown method) with a JSON-RPC error that echoes the request's id.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("Invalid params: {0}")]
    MissingMeta(String),
    #[error("Header mismatch: {0}")]
    HeaderMismatch(String),
    #[error(
        "Unsupported protocol version: {requested}; this gateway speaks {} (and, with initialize, {})",
        MODERN_VERSIONS.join(", "), SUPPORTED_VERSIONS.join(", ")
    )]
    UnsupportedVersion { requested: String },
    #[error("Method not found: {0}")]
    UnknownMethod(String),
    #[error("Invalid request: {0}")]
    Invalid(String),
}

impl Refusal {
    pub fn code(&self) -> i64 {
        match self {
            Refusal::MissingMeta(_) => code::INVALID_PARAMS,
            Refusal::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Refusal::UnsupportedVersion { .. } => code::UNSUPPORTED_VERSION,
            Refusal::UnknownMethod(_) => code::METHOD_NOT_FOUND,
            Refusal::Invalid(_) => code::INVALID_REQUEST,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownMethod(_) => 404,
            _ => 400,
        }
    }

    pub fn data(&self) -> Option<Value> {
        match self {
            Refusal::UnsupportedVersion { requested } => Some(serde_json::json!({
                "supported": MODERN_VERSIONS,
                "requested": requested,
            })),
            _ => None,
        }
    }

    /// The JSON-RPC error body, answering `id`.
    pub fn body(&self, id: Option<&RequestId>) -> bytes::Bytes {
        jsonrpc::error_response(id, self.code(), &self.to_string(), self.data()).raw
    }
}

/// A checked 2026-07-28 request.
#[derive(Debug, Clone)]
pub struct Modern {
    /// `None` for a notification.
    pub id: Option<RequestId>,
    pub method: String,
    pub version: String,
    /// `params` without the 2026-07-28 `_meta` keys, `inputResponses` and
    /// `requestState`: what a session-era backend is sent.
    pub params: Map<String, Value>,
    pub capabilities: Value,
    pub client_info: Option<Value>,
    pub log_level: Option<String>,
    /// On a retry of a multi-round-trip request.
    pub input_responses: Option<Map<String, Value>>,
    pub request_state: Option<String>,
}

impl Modern {
    /// Whether this client declared `capability` (e.g. `"elicitation"`).
    pub fn declares(&self, capability: &str) -> bool {
        self.capabilities.get(capability).is_some()
    }

    /// A stable text for the declared capabilities (backend sessions are kept
    /// per capability set: a session-era server is told them once, at initialize).
    pub fn capability_key(&self) -> String {
        canonical(&self.capabilities)
    }
}

/// Whether this request is meant as 2026-07-28: a modern `MCP-Protocol-Version`
/// header, or the modern version in `_meta` (a sessionless request with neither
/// is a session-era mistake and gets the session-era answer).
pub fn is_modern(headers: &HeaderMap, msg: &Message) -> bool {
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    match header {
        Some(v) => !SUPPORTED_VERSIONS.contains(&v),
        None => msg.meta_protocol_version().is_some(),
    }
}

/// Check one request (or notification) against its headers.
pub fn check(headers: &HeaderMap, msg: &Message) -> Result<Modern, Refusal> {
    let id = msg.request_id().cloned();
    let Some(method) = msg.method() else {
        return Err(Refusal::Invalid(
            "a 2026-07-28 POST carries a request or a notification, not a response".into(),
        ));
    };
    let body: Value = serde_json::from_slice(&msg.raw)
        .map_err(|e| Refusal::Invalid(format!("the body is not JSON: {e}")))?;
    let mut params = match body.get("params") {
        None => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(Refusal::MissingMeta("params must be an object".into())),
    };
    let mut meta = match params.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let version = meta.remove(META_VERSION);
    let capabilities = meta.remove(META_CAPABILITIES);
    let client_info = meta.remove(META_CLIENT_INFO);
    let log_level = meta.remove(META_LOG_LEVEL);
    if id.is_some() {
        let (Some(version), Some(capabilities)) = (&version, &capabilities) else {
            return Err(Refusal::MissingMeta(format!(
                "a 2026-07-28 request carries params._meta[\"{META_VERSION}\"] and params._meta[\"{META_CAPABILITIES}\"]; this one lacks {}",
                match (&version, &capabilities) {
                    (None, None) => "both",
                    (None, _) => "the protocol version",
                    _ => "the client capabilities",
                }
            )));
        };
        if !version.is_string() {
            return Err(Refusal::MissingMeta(format!(
                "params._meta[\"{META_VERSION}\"] must be a string"
            )));
        }
        if !capabilities.is_object() {
            return Err(Refusal::MissingMeta(format!(
                "params._meta[\"{META_CAPABILITIES}\"] must be an object"
            )));
        }
    }
    let version = version
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    check_headers(headers, method, &version, &params)?;
    if !MODERN_VERSIONS.contains(&version.as_str()) && id.is_some() {
        return Err(Refusal::UnsupportedVersion { requested: version });
    }
    if id.is_some() && !METHODS.contains(&method) {
        return Err(Refusal::UnknownMethod(format!(
            "{method:?} is not a method of MCP {version}{}",
            if removed(method) {
                " (it belongs to the session era, which begins with initialize)"
            } else {
                ""
            }
        )));
    }
    if !meta.is_empty() {
        params.insert("_meta".into(), Value::Object(meta));
    }
    let input_responses = match params.remove("inputResponses") {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(Refusal::MissingMeta(
                "inputResponses must be an object".into(),
            ));
        }
    };
    let request_state = match params.remove("requestState") {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Refusal::MissingMeta("requestState must be a string".into())),
    };
    Ok(Modern {
        id,
        method: method.to_string(),
        version,
        params,
        capabilities: capabilities.unwrap_or_else(|| Value::Object(Map::new())),
        client_info,
        log_level: log_level.and_then(|l| l.as_str().map(str::to_string)),
        input_responses,
        request_state,
    })
}

fn removed(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
    )
}

/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` must be present and say
/// what the body says (a proxy routing on headers must see the truth).
fn check_headers(
    headers: &HeaderMap,
    method: &str,
    version: &str,
    params: &Map<String, Value>,
) -> Result<(), Refusal> {
    let one = |name: &str| -> Result<Option<String>, Refusal> {
        let mut values = headers.get_all(name).iter();
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Refusal::HeaderMismatch(format!(
                "the {name} header is sent more than once"
            )));
        }
        v.to_str()
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| Refusal::HeaderMismatch(format!("the {name} header is not text")))
    };
    match one(VERSION_HEADER)? {
        None => {
            return Err(Refusal::HeaderMismatch(format!(
                "the MCP-Protocol-Version header is required and must equal params._meta[\"{META_VERSION}\"] ({version:?})"
            )));
        }
        Some(h) if h != version => {
            return Err(Refusal::HeaderMismatch(format!(
                "the MCP-Protocol-Version header says {h:?} but params._meta[\"{META_VERSION}\"] says {version:?}"
            )));
        }
        Some(_) => {}
    }
    match one(METHOD_HEADER)? {
        None => {
            return Err(Refusal::HeaderMismatch(format!(
                "the Mcp-Method header is required and must equal the body's method ({method:?})"
            )));
        }
        Some(h) if h != method => {
            return Err(Refusal::HeaderMismatch(format!(
                "the Mcp-Method header says {h:?} but the body's method is {method:?}"
            )));
        }
        Some(_) => {}
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
        "resources/read" => params.get("uri").and_then(Value::as_str),
        _ => None,
    };
    if let Some(name) = named {
        match one(NAME_HEADER)?.map(|h| decode_header(&h)) {
            None => {
                return Err(Refusal::HeaderMismatch(format!(
                    "the Mcp-Name header is required for {method} and must equal {name:?}"
                )));
            }
            Some(None) => {
                return Err(Refusal::HeaderMismatch(
                    "the Mcp-Name header's =?base64?...?= value does not decode".into(),
                ));
            }
            Some(Some(h)) if h != name => {
                return Err(Refusal::HeaderMismatch(format!(
                    "the Mcp-Name header says {h:?} but the body names {name:?}"
                )));
            }
            Some(Some(_)) => {}
        }
    }
    Ok(())
}

/// A header value, decoded from the `=?base64?...?=` form used for values
/// that are not plain ASCII.
fn decode_header(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_string()),
    }
}

/// JSON text with object keys sorted, whatever order they came in.
pub(super) fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(b).unwrap_or(Value::Null)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn msg(v: Value) -> Message {
        Message::parse(Bytes::from(v.to_string())).expect("valid message")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    fn call(version: &str, name: &str) -> Message {
        msg(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": name, "arguments": {},
            "_meta": {META_VERSION: version, META_CAPABILITIES: {"elicitation": {}}}}}),
        )
    }

    #[test]
    fn a_well_formed_call_passes_and_loses_its_modern_meta() {
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        let m = check(&h, &call("2026-07-28", "echo")).expect("accepted");
        assert_eq!(m.method, "tools/call");
        assert!(m.declares("elicitation"));
        assert!(!m.params.contains_key("_meta"));
        assert_eq!(m.params["name"], "echo");
    }

    #[test]
    fn each_refusal_has_its_code() {
        let ok = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ];
        // Missing _meta.
        let bare = msg(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        assert_eq!(
            check(&headers(&ok), &bare).unwrap_err().code(),
            code::INVALID_PARAMS
        );
        // Name header missing, then wrong; base64 form accepted.
        let c = call("2026-07-28", "héllo");
        assert_eq!(
            check(&headers(&ok), &c).unwrap_err().code(),
            code::HEADER_MISMATCH
        );
        let mut wrong = ok.to_vec();
        wrong.push(("mcp-name", "other"));
        assert_eq!(
            check(&headers(&wrong), &c).unwrap_err().code(),
            code::HEADER_MISMATCH
        );
        let mut b64 = ok.to_vec();
        b64.push(("mcp-name", "=?base64?aMOpbGxv?="));
        assert!(check(&headers(&b64), &c).is_ok());
        // Header and body versions differ.
        let v999 = call("v999", "héllo");
        let e = check(&headers(&b64), &v999).unwrap_err();
        assert_eq!(e.code(), code::HEADER_MISMATCH);
        // Both say an unknown version.
        let mut both = vec![
            ("mcp-protocol-version", "v999"),
            ("mcp-method", "tools/call"),
        ];
        both.push(("mcp-name", "=?base64?aMOpbGxv?="));
        let e = check(&headers(&both), &v999).unwrap_err();
        assert_eq!(e.code(), code::UNSUPPORTED_VERSION);
        assert_eq!(e.data().expect("data")["supported"][0], "2026-07-28");
        // A removed method: 404.
        let ping = msg(
            json!({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {
            "_meta": {META_VERSION: "2026-07-28", META_CAPABILITIES: {}}}}),
        );
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "ping"),
        ]);
        let e = check(&h, &ping).unwrap_err();
        assert_eq!((e.code(), e.status()), (code::METHOD_NOT_FOUND, 404));
    }

    #[test]
    fn capability_keys_ignore_key_order() {
        let a = json!({"a": {}, "b": {"x": 1, "y": 2}});
        let b = json!({"b": {"y": 2, "x": 1}, "a": {}});
        assert_eq!(canonical(&a), canonical(&b));
    }
}
