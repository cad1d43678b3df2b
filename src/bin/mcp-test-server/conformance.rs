//! What the public MCP conformance suite's server scenarios call.

use serde_json::{Value, json};

use crate::Ctx;

type Outcome = Result<Value, (i64, String)>;

pub fn tools() -> Vec<Value> {
    Vec::new()
}

pub async fn call(name: &str, _params: &Value, _ctx: &Ctx, _progress: Option<Value>) -> Outcome {
    Err((-32602, format!("Unknown tool: {name}")))
}

pub fn resources() -> Value {
    json!({"resources": []})
}

pub fn resource_templates() -> Value {
    json!({"resourceTemplates": []})
}

pub fn read_resource(params: &Value) -> Outcome {
    Err((-32002, format!("Resource not found: {}", params["uri"])))
}

pub fn prompts() -> Value {
    json!({"prompts": []})
}

pub fn get_prompt(params: &Value) -> Outcome {
    Err((-32602, format!("Unknown prompt: {}", params["name"])))
}

pub fn complete(_params: &Value) -> Value {
    json!({"completion": {"values": [], "total": 0, "hasMore": false}})
}
