//! The JSON-RPC 2.0 envelope, and nothing more.
//!
//! A transparent gateway must not lose what it does not understand, so a [`Message`]
//! keeps the exact bytes it arrived with and only the envelope (`id`, `method`) is
//! parsed. `params`, `result` and `error` are never re-serialized on the proxy path.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON-RPC error codes the gateway itself produces: each code has one
/// meaning, and this is the one list of them (docs/protocol.md repeats it).
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The HTTP request or the JSON-RPC envelope is not acceptable as sent
    /// (media types, missing headers, batch rules, Origin); the HTTP status
    /// says which.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method, or nothing (no service) is served at this URL.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The parameters name nothing this caller can use (an unknown or hidden
    /// tool or prompt).
    pub const INVALID_PARAMS: i64 = -32602;
    /// A fault of the gateway itself.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The service's backend could not be started or reached, or it died.
    pub const BACKEND_UNAVAILABLE: i64 = -32000;
    /// The backend did not answer within the service's `requestTimeout`.
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// `resources/read` of a resource that does not exist or that this
    /// caller may not see (MCP's session-era code; the two are not told apart).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The session named by `Mcp-Session-Id` (or `sessionId`) does not exist,
    /// ended, or is not this caller's (HTTP 404: initialize again).
    pub const SESSION_NOT_FOUND: i64 = -32003;
    /// A limit on sessions was reached: the service's `maxSessions` (503) or
    /// the person's `maxSessionsPerUser` (429).
    pub const LIMIT_REACHED: i64 = -32004;
    /// The service needs the person's own token, which they have not set
    /// (the message says where to set it).
    pub const TOKEN_REQUIRED: i64 = -32005;
    /// MCP 2026-07-28: an `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name`
    /// header is missing or says something else than the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: the request needs a client capability it did not
    /// declare (`data.requiredCapabilities` names it).
    pub const MISSING_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28: the request's protocol version is not one the gateway
    /// speaks (`data.supported` lists those it does).
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// MCP protocol versions of the stateless era (no `initialize`; the version
/// and capabilities ride on every request), newest first.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// MCP protocol versions of the session era the gateway speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// A request id in canonical form, usable as a map key.
///
/// Strings and numbers never collide (`"1"` and `1` are different ids), and the
/// original JSON text is kept so that it can be written back unchanged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Box<str>);

impl RequestId {
    fn from_raw(raw: &RawValue) -> Option<Self> {
        let text = raw.get().trim();
        match text.as_bytes().first()? {
            b'"' => {
                // Canonicalise escapes so `"a"` and `"\u0061"` are one id.
                let s: String = serde_json::from_str(text).ok()?;
                Some(RequestId(serde_json::to_string(&s).ok()?.into()))
            }
            b'-' | b'0'..=b'9' => {
                let n: serde_json::Number = serde_json::from_str(text).ok()?;
                Some(RequestId(n.to_string().into()))
            }
            _ => None,
        }
    }

    /// The id as JSON text, ready to splice into a message.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Request {
        id: RequestId,
        method: Box<str>,
    },
    Notification {
        method: Box<str>,
    },
    /// `id` is `None` only for error responses to unparseable requests.
    Response {
        id: Option<RequestId>,
    },
}

/// One JSON-RPC message: its exact bytes and its parsed envelope.
#[derive(Debug, Clone)]
pub struct Message {
    pub raw: Bytes,
    pub kind: Kind,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ParamsMeta<'a> {
    #[serde(borrow, default)]
    params: Option<MetaHolder<'a>>,
}

#[derive(Deserialize)]
struct MetaHolder<'a> {
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<Meta<'a>>,
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

/// Why a body is not acceptable JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (-32700).
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message (-32600).
    Invalid(String),
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => code::PARSE_ERROR,
            ParseError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            ParseError::Json(m) | ParseError::Invalid(m) => m,
        }
    }
}

/// A body from a client: one message or a batch.
#[derive(Debug)]
pub struct Incoming {
    pub messages: Vec<Message>,
    pub batch: bool,
}

impl Message {
    /// Parse one message from its own bytes (a line from stdio, an SSE event).
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        let kind = {
            let value: &RawValue = serde_json::from_slice(&raw)
                .map_err(|e| ParseError::Json(format!("invalid JSON: {e}")))?;
            classify(value)?
        };
        Ok(Message { raw, kind })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    pub fn request_id(&self) -> Option<&RequestId> {
        match &self.kind {
            Kind::Request { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// The progress token a request asks for (`params._meta.progressToken`), or the
    /// token a `notifications/progress` refers to (`params.progressToken`), as JSON text.
    pub fn progress_token(&self) -> Option<String> {
        let parsed: ParamsMeta = serde_json::from_slice(&self.raw).ok()?;
        let params = parsed.params?;
        let raw = match &self.kind {
            Kind::Notification { .. } => params.progress_token,
            _ => params.meta.and_then(|m| m.progress_token),
        }?;
        RequestId::from_raw(raw).map(|id| id.0.into_string())
    }

    /// `params` as a JSON object (empty when absent or not an object).
    pub fn params_object(&self) -> serde_json::Map<String, serde_json::Value> {
        #[derive(Deserialize)]
        struct P {
            params: Option<serde_json::Map<String, serde_json::Value>>,
        }
        serde_json::from_slice::<P>(&self.raw)
            .ok()
            .and_then(|p| p.params)
            .unwrap_or_default()
    }

    /// `params.protocolVersion` of an `initialize` request.
    pub fn initialize_version(&self) -> Option<String> {
        let parsed: ParamsMeta = serde_json::from_slice(&self.raw).ok()?;
        parsed.params?.protocol_version.map(Cow::into_owned)
    }

    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`: set by MCP 2026-07-28
    /// clients on every request instead of an `initialize` handshake.
    pub fn meta_protocol_version(&self) -> Option<String> {
        let parsed: ParamsMeta = serde_json::from_slice(&self.raw).ok()?;
        parsed.params?.meta?.protocol_version.map(Cow::into_owned)
    }
}

fn classify(value: &RawValue) -> Result<Kind, ParseError> {
    // serde would also read a JSON array into the envelope's fields, in order.
    if !value.get().trim_start().starts_with('{') {
        return Err(ParseError::Invalid(
            "a JSON-RPC message must be a JSON object".to_string(),
        ));
    }
    let env: Envelope = serde_json::from_str(value.get())
        .map_err(|_| ParseError::Invalid("a JSON-RPC message must be a JSON object".to_string()))?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(ParseError::Invalid(
            "the \"jsonrpc\" member must be exactly \"2.0\"".to_string(),
        ));
    }
    let id = match env.id {
        None => None,
        Some(raw) => Some(RequestId::from_raw(raw).ok_or_else(|| {
            ParseError::Invalid("\"id\" must be a string or a number".to_string())
        })?),
    };
    match (env.method, id) {
        (Some(method), Some(id)) => Ok(Kind::Request {
            id,
            method: method.into_owned().into_boxed_str(),
        }),
        (Some(method), None) => Ok(Kind::Notification {
            method: method.into_owned().into_boxed_str(),
        }),
        (None, id) => {
            if env.result.is_some() == env.error.is_some() {
                return Err(ParseError::Invalid(
                    "a message without \"method\" must be a response with exactly one of \"result\" or \"error\"".to_string(),
                ));
            }
            if id.is_none() && env.result.is_some() {
                return Err(ParseError::Invalid(
                    "a result response needs an \"id\"".to_string(),
                ));
            }
            Ok(Kind::Response { id })
        }
    }
}

/// Parse a client's HTTP body: a single message or (where allowed) a batch.
pub fn parse_body(body: &Bytes) -> Result<Incoming, ParseError> {
    let first = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied()
        .ok_or_else(|| ParseError::Json("the request body is empty".to_string()))?;
    if first == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| ParseError::Json(format!("invalid JSON: {e}")))?;
        if items.is_empty() {
            return Err(ParseError::Invalid(
                "an empty batch is not valid".to_string(),
            ));
        }
        let messages = items
            .into_iter()
            .map(|item| {
                let kind = classify(item)?;
                Ok(Message {
                    raw: Bytes::copy_from_slice(item.get().as_bytes()),
                    kind,
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        Ok(Incoming {
            messages,
            batch: true,
        })
    } else {
        let msg = Message::parse(body.clone())?;
        Ok(Incoming {
            messages: vec![msg],
            batch: false,
        })
    }
}

/// Build an error response. `message` is the human-readable text a client will show.
pub fn error_response(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> Message {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    let id_text = id.map_or("null", RequestId::as_json);
    let raw = format!(r#"{{"jsonrpc":"2.0","id":{id_text},"error":{error}}}"#);
    Message {
        raw: Bytes::from(raw),
        kind: Kind::Response { id: id.cloned() },
    }
}

/// A result response the gateway itself answers with.
pub fn result_response(id: &RequestId, result: &serde_json::Value) -> Message {
    raw_result_response(id, &result.to_string())
}

/// A result response whose `result` is ready JSON text.
pub fn raw_result_response(id: &RequestId, result: &str) -> Message {
    let raw = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
        id.as_json()
    );
    Message {
        raw: Bytes::from(raw),
        kind: Kind::Response {
            id: Some(id.clone()),
        },
    }
}

/// The same message under another id: the id's bytes replaced, every other
/// byte as it was (a large result or arguments are never parsed).
pub fn with_id(msg: &Message, id: &RequestId) -> Option<Message> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    let found: Id = serde_json::from_slice(&msg.raw).ok()?;
    let raw = splice(
        &msg.raw,
        &mut [(span(&msg.raw, found.id)?, id.as_json().as_bytes())],
    )?;
    let kind = match &msg.kind {
        Kind::Request { method, .. } => Kind::Request {
            id: id.clone(),
            method: method.clone(),
        },
        Kind::Response { .. } => Kind::Response {
            id: Some(id.clone()),
        },
        Kind::Notification { .. } => return None,
    };
    Some(Message {
        raw: Bytes::from(raw),
        kind,
    })
}

/// Where a borrowed part of `raw` lies in it.
pub fn span(raw: &[u8], part: &serde_json::value::RawValue) -> Option<std::ops::Range<usize>> {
    let start = (part.get().as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = start + part.get().len();
    (end <= raw.len()).then_some(start..end)
}

/// `raw` with each range replaced (ranges must not overlap).
pub fn splice(raw: &[u8], parts: &mut [(std::ops::Range<usize>, &[u8])]) -> Option<Vec<u8>> {
    parts.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(raw.len() + 32);
    let mut at = 0;
    for (r, with) in parts.iter() {
        if r.start < at {
            return None;
        }
        out.extend_from_slice(&raw[at..r.start]);
        out.extend_from_slice(with);
        at = r.end;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

/// A message built (or rewritten) as a JSON value.
pub fn from_value(v: &serde_json::Value) -> Option<Message> {
    Message::parse(Bytes::from(v.to_string())).ok()
}

/// A request id made by the gateway (for its own requests, and for rewritten ones).
pub fn string_id(text: &str) -> RequestId {
    RequestId(
        serde_json::Value::String(text.to_string())
            .to_string()
            .into(),
    )
}

/// A notification the gateway itself sends (e.g. `notifications/cancelled` on timeout).
pub fn notification(method: &str, params: serde_json::Value) -> Message {
    let raw = serde_json::json!({ "jsonrpc": "2.0", "method": method, "params": params });
    Message {
        raw: Bytes::from(raw.to_string()),
        kind: Kind::Notification {
            method: method.into(),
        },
    }
}

/// The request id in a JSON value (e.g. `params.requestId` of a cancellation).
pub fn id_from_value(v: &serde_json::Value) -> Option<RequestId> {
    let raw = serde_json::value::to_raw_value(v).ok()?;
    RequestId::from_raw(&raw)
}

/// A request id as a `serde_json::Value` (for `notifications/cancelled` params).
pub fn id_value(id: &RequestId) -> serde_json::Value {
    serde_json::from_str(id.as_json()).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_not_messages() {
        assert!(parse(r#"["2.0",1,"tools/list"]"#).is_err());
        assert!(parse_body(&Bytes::from_static(br#"[["2.0",1,"tools/list"]]"#)).is_err());
    }

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::from(s.to_string()))
    }

    #[test]
    fn keeps_bytes_and_reads_envelope() {
        let text = r#"{"jsonrpc":"2.0","id":1.5,"method":"x/unknown","params":{"a":[1,2],"_meta":{"z":1}}}"#;
        let m = parse(text).expect("valid");
        assert_eq!(&m.raw[..], text.as_bytes());
        assert_eq!(m.method(), Some("x/unknown"));
        assert_eq!(m.request_id().map(|i| i.as_json()), Some("1.5"));
    }

    #[test]
    fn ids_of_different_types_differ() {
        let a = parse(r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).expect("valid");
        let b = parse(r#"{"jsonrpc":"2.0","id":"1","method":"m"}"#).expect("valid");
        assert_ne!(a.request_id(), b.request_id());
        let c = parse(r#"{"jsonrpc":"2.0","id":"\u0031","method":"m"}"#).expect("valid");
        assert_eq!(b.request_id(), c.request_id());
    }

    #[test]
    fn rejects_bad_envelopes() {
        assert!(matches!(parse("{"), Err(ParseError::Json(_))));
        assert!(matches!(parse("[1"), Err(ParseError::Json(_))));
        for bad in [
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            "42",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Invalid(_))),
                "{bad} should be invalid"
            );
        }
    }

    #[test]
    fn batches() {
        let body = Bytes::from_static(
            br#" [{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
        );
        let inc = parse_body(&body).expect("valid batch");
        assert!(inc.batch);
        assert_eq!(inc.messages.len(), 2);
        assert_eq!(
            &inc.messages[1].raw[..],
            br#"{"jsonrpc":"2.0","method":"b"}"#
        );
        assert!(matches!(
            parse_body(&Bytes::from_static(b"[]")),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn progress_tokens() {
        let req = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"p1"}}}"#).expect("valid");
        assert_eq!(req.progress_token().as_deref(), Some("\"p1\""));
        let note = parse(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p1","progress":1}}"#).expect("valid");
        assert_eq!(note.progress_token().as_deref(), Some("\"p1\""));
    }

    #[test]
    fn error_response_shape() {
        let id = parse(r#"{"jsonrpc":"2.0","id":"x","method":"m"}"#)
            .expect("valid")
            .request_id()
            .cloned();
        let e = error_response(id.as_ref(), code::REQUEST_TIMEOUT, "slow \"svc\"", None);
        let v: serde_json::Value = serde_json::from_slice(&e.raw).expect("json");
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(v["error"]["message"], "slow \"svc\"");
    }
}
