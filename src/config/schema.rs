//! The JSON Schema of the configuration file, generated from the types.
//!
//! Every place that takes a string also takes `{"$env": "VAR"}`; the generated
//! schema is rewritten to say so, rather than annotating each field by hand.

use serde_json::{Value, json};

use super::ConfigFile;

pub fn generate() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(ConfigFile)).unwrap_or_else(|_| json!({}));
    allow_env_references(&mut schema);
    if let Value::Object(map) = &mut schema {
        let mut defs = map.remove("$defs").unwrap_or_else(|| json!({}));
        defs["EnvReference"] = json!({
            "description": "The value of an environment variable, read at startup.",
            "type": "object",
            "properties": { "$env": { "type": "string" } },
            "required": ["$env"],
            "additionalProperties": false
        });
        map.insert("$defs".into(), defs);
    }
    schema
}

fn allow_env_references(node: &mut Value) {
    match node {
        Value::Object(map) => {
            for v in map.values_mut() {
                allow_env_references(v);
            }
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string {
                let plain = Value::Object(std::mem::take(map));
                map.insert(
                    "anyOf".into(),
                    json!([plain, { "$ref": "#/$defs/EnvReference" }]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_env_references),
        _ => {}
    }
}

/// The schema as committed in the repository (pretty JSON with a final newline).
pub fn render() -> String {
    let mut s = serde_json::to_string_pretty(&generate()).unwrap_or_default();
    s.push('\n');
    s
}
