//! What the public MCP conformance suite's server scenarios call: the `test_*`
//! tools, `test://` resources and `test_*` prompts, with the exact contents the
//! scenarios describe.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Ctx;

type Outcome = Result<Value, (i64, String)>;

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV file with a header and no samples.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

fn simple(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": {}}})
}

pub fn tools() -> Vec<Value> {
    vec![
        simple("test_simple_text", "Returns simple text"),
        simple("test_image_content", "Returns an image"),
        simple("test_audio_content", "Returns audio"),
        simple("test_embedded_resource", "Returns an embedded resource"),
        simple(
            "test_multiple_content_types",
            "Returns text, image and resource",
        ),
        simple(
            "test_tool_with_logging",
            "Logs three messages while running",
        ),
        simple("test_error_handling", "Always returns a tool error"),
        simple(
            "test_tool_with_progress",
            "Reports progress 0, 50, 100 of 100",
        ),
        json!({"name": "test_sampling", "description": "Asks the client to sample",
               "inputSchema": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}),
        json!({"name": "test_elicitation", "description": "Asks the user for input",
               "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}}),
        simple(
            "test_elicitation_sep1034_defaults",
            "Elicitation with defaults (SEP-1034)",
        ),
        simple(
            "test_elicitation_sep1330_enums",
            "Elicitation with enum schemas (SEP-1330)",
        ),
        simple(
            "test_reconnection",
            "Closes its SSE stream mid-call (SEP-1699)",
        ),
        json!({
            "name": "json_schema_2020_12_tool",
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "address", "type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}, "kind": {"type": "string"}, "id": {"type": "string"}},
                "allOf": [{"required": ["name"]}, {"anyOf": [{"required": ["address"]}, {"required": ["id"]}]}],
                "if": {"properties": {"kind": {"const": "business"}}},
                "then": {"required": ["id"]},
                "else": {"required": []},
                "additionalProperties": false
            }
        }),
    ]
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

fn log(ctx: &Ctx, level: &str, message: &str) {
    let threshold = ctx.session.log_level.lock().ok().and_then(|l| l.clone());
    let rank = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap_or(0);
    if threshold.is_some_and(|t| rank(level) < rank(&t)) {
        return;
    }
    ctx.notify(
        "notifications/message",
        json!({"level": level, "logger": "conformance", "data": message}),
    );
}

async fn elicit(ctx: &Ctx, params: Value) -> Result<Value, (i64, String)> {
    ctx.request("elicitation/create", params)
        .await
        .map_err(|e| (-32603, e))
}

fn outcome(r: &Value) -> String {
    format!(
        "action={}, content={}",
        r.get("action").and_then(Value::as_str).unwrap_or("?"),
        r.get("content").cloned().unwrap_or(Value::Null)
    )
}

pub async fn call(name: &str, params: &Value, ctx: &Ctx, progress: Option<Value>) -> Outcome {
    let arg = |n: &str| params.get("arguments").and_then(|a| a.get(n)).cloned();
    match name {
        "test_simple_text" => Ok(text("This is a simple text response for testing.")),
        "test_image_content" => {
            Ok(json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}))
        }
        "test_audio_content" => {
            Ok(json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}))
        }
        "test_embedded_resource" => Ok(json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}}]})),
        "test_multiple_content_types" => Ok(json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": "{\"test\":\"data\",\"value\":123}"}}
        ]})),
        "test_tool_with_logging" => {
            log(ctx, "info", "Tool execution started");
            tokio::time::sleep(Duration::from_millis(50)).await;
            log(ctx, "info", "Tool processing data");
            tokio::time::sleep(Duration::from_millis(50)).await;
            log(ctx, "info", "Tool execution completed");
            Ok(text("Tool with logging executed successfully"))
        }
        "test_error_handling" => Ok(json!({"isError": true, "content": [
            {"type": "text", "text": "This tool intentionally returns an error for testing"}]})),
        "test_tool_with_progress" => {
            for (i, p) in [0, 50, 100].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Some(tok) = &progress {
                    ctx.notify(
                        "notifications/progress",
                        json!({"progressToken": tok, "progress": p, "total": 100}),
                    );
                }
            }
            Ok(text("Tool with progress executed successfully"))
        }
        "test_sampling" => {
            let prompt = arg("prompt")
                .and_then(|p| p.as_str().map(str::to_string))
                .unwrap_or_default();
            let said = ctx.sample(&prompt).await?;
            Ok(text(format!("LLM response: {said}")))
        }
        "test_elicitation" => {
            let message = arg("message")
                .and_then(|m| m.as_str().map(str::to_string))
                .unwrap_or_default();
            let r = elicit(
                ctx,
                json!({"message": message, "requestedSchema": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}
                },
                "required": ["username", "email"]}}),
            )
            .await?;
            Ok(text(format!("User response: {}", outcome(&r))))
        }
        "test_elicitation_sep1034_defaults" => {
            let r = elicit(ctx, json!({"message": "Please review and update the form fields with defaults", "requestedSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Verification status", "default": true}
                }}})).await?;
            Ok(text(format!("Elicitation completed: {}", outcome(&r))))
        }
        "test_elicitation_sep1330_enums" => {
            let r = elicit(ctx, json!({"message": "Please select options from the enum fields", "requestedSchema": {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "description": "Select multiple options",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "description": "Select multiple options with titles",
                        "items": {"anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"}]}}
                }}})).await?;
            Ok(text(format!("Elicitation completed: {}", outcome(&r))))
        }
        "test_reconnection" => {
            // Over HTTP the transport closes the stream early (see http.rs); the
            // answer comes later, on the resumed stream.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(text("Reconnection test completed successfully"))
        }
        "json_schema_2020_12_tool" => Ok(text(format!(
            "received: {}",
            params.get("arguments").cloned().unwrap_or(Value::Null)
        ))),
        other => Err((-32602, format!("Unknown tool: {other}"))),
    }
}

pub fn resources() -> Value {
    json!({"resources": [
        {"uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource to subscribe to", "mimeType": "text/plain"}
    ]})
}

pub fn resource_templates() -> Value {
    json!({"resourceTemplates": [
        {"uriTemplate": "test://template/{id}/data", "name": "template-data", "description": "Data by id", "mimeType": "application/json"}
    ]})
}

pub fn read_resource(params: &Value) -> Outcome {
    let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
    let contents = match uri {
        "test://static-text" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
        }
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
        "test://watched-resource" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."})
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")
                .and_then(|rest| rest.strip_suffix("/data"))
                .filter(|id| !id.is_empty() && !id.contains('/'));
            match id {
                Some(id) => json!({"uri": uri, "mimeType": "application/json",
                    "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
                None => return Err((-32002, format!("Resource not found: {uri}"))),
            }
        }
    };
    Ok(json!({"contents": [contents]}))
}

pub fn prompts() -> Value {
    json!({"prompts": [
        {"name": "test_simple_prompt", "description": "A prompt without arguments"},
        {"name": "test_prompt_with_arguments", "description": "A prompt with arguments", "arguments": [
            {"name": "arg1", "description": "First test argument", "required": true},
            {"name": "arg2", "description": "Second test argument", "required": true}]},
        {"name": "test_prompt_with_embedded_resource", "description": "A prompt with an embedded resource", "arguments": [
            {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "description": "A prompt with an image"}
    ]})
}

pub fn get_prompt(params: &Value) -> Outcome {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let arg = |n: &str| {
        params
            .get("arguments")
            .and_then(|a| a.get(n))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({"type": "text", "text": "This is a simple prompt for testing."}),
        )],
        "test_prompt_with_arguments" => vec![user(json!({"type": "text",
            "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}))],
        "test_prompt_with_embedded_resource" => vec![
            user(
                json!({"type": "resource", "resource": {"uri": arg("resourceUri"), "mimeType": "text/plain",
                "text": "Embedded resource content for testing."}}),
            ),
            user(json!({"type": "text", "text": "Please process the embedded resource above."})),
        ],
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."})),
        ],
        other => return Err((-32602, format!("Unknown prompt: {other}"))),
    };
    Ok(json!({"messages": messages}))
}

pub fn complete(params: &Value) -> Value {
    let typed = params
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let values: Vec<&str> = ["paris", "park", "party", "hello", "world"]
        .into_iter()
        .filter(|v| v.starts_with(typed))
        .collect();
    json!({"completion": {"total": values.len(), "values": values, "hasMore": false}})
}
