//! The tools the conformance suite's 2026-07-28 scenarios call, written the
//! session-era way: a tool that needs the client asks it mid-call
//! (elicitation, sampling, roots) and waits. In front of this server the
//! gateway turns those requests into `input_required` results for 2026-07-28
//! clients; this server knows nothing of that.

use serde_json::{Value, json};

use crate::Ctx;

type Outcome = Result<Value, (i64, String)>;

fn simple(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": {}}})
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

pub fn tools() -> Vec<Value> {
    vec![
        simple(
            "test_missing_capability",
            "Asks the client to sample, whatever it declared",
        ),
        simple(
            "test_streaming_elicitation",
            "Asks the user for their name mid-call",
        ),
        simple("test_logging_tool", "Logs three messages while running"),
        simple(
            "test_trigger_tool_change",
            "Says the tool list changed (notifications/tools/list_changed)",
        ),
        simple(
            "test_trigger_prompt_change",
            "Says the prompt list changed (notifications/prompts/list_changed)",
        ),
        simple(
            "test_input_required_result_elicitation",
            "Asks the user for their name, then greets them",
        ),
        simple(
            "test_input_required_result_sampling",
            "Asks the client's model a question",
        ),
        simple(
            "test_input_required_result_list_roots",
            "Asks the client for its roots",
        ),
        simple(
            "test_input_required_result_request_state",
            "Asks the user to confirm",
        ),
        simple(
            "test_input_required_result_multiple_inputs",
            "Asks for a name, a greeting and the roots at once",
        ),
        simple(
            "test_input_required_result_multi_round",
            "Asks for a name, then a favourite colour",
        ),
        simple(
            "test_input_required_result_tampered_state",
            "Asks the user to confirm",
        ),
        simple(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared (sampling, else elicitation, else roots)",
        ),
    ]
}

async fn ask(ctx: &Ctx, method: &str, params: Value) -> Outcome {
    ctx.request(method, params).await.map_err(|e| (-32603, e))
}

async fn elicit(ctx: &Ctx, message: &str, properties: Value) -> Outcome {
    elicit_as(ctx, None, message, properties).await
}

async fn elicit_as(ctx: &Ctx, key: Option<&str>, message: &str, properties: Value) -> Outcome {
    let required: Vec<String> = properties
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    ctx.request_as(
        key,
        "elicitation/create",
        json!({"message": message, "requestedSchema": {"type": "object", "properties": properties, "required": required}}),
    )
    .await
    .map_err(|e| (-32603, e))
}

async fn sample(ctx: &Ctx, prompt: &str, max_tokens: u32) -> Outcome {
    ask(
        ctx,
        "sampling/createMessage",
        json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": max_tokens}),
    )
    .await
}

fn field(r: &Value, name: &str) -> String {
    match r.pointer(&format!("/content/{name}")) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

/// `None` when `name` is not one of these tools.
pub async fn call(name: &str, ctx: &Ctx) -> Option<Outcome> {
    let name_schema = || json!({"name": {"type": "string"}});
    let confirm = || json!({"ok": {"type": "boolean"}});
    Some(match name {
        "test_missing_capability" => sample(ctx, "Say anything", 10)
            .await
            .map(|r| text(format!("sampled: {}", field(&r, "text")))),
        "test_streaming_elicitation" | "test_input_required_result_elicitation" => {
            elicit_as(ctx, Some("user_name"), "What is your name?", name_schema())
                .await
                .map(|r| text(format!("Hello, {}!", field(&r, "name"))))
        }
        "test_logging_tool" => {
            for m in ["started", "working", "done"] {
                ctx.notify(
                    "notifications/message",
                    json!({"level": "info", "logger": "conformance", "data": m}),
                );
            }
            Ok(text("Logged three messages"))
        }
        "test_trigger_tool_change" => {
            ctx.notify("notifications/tools/list_changed", json!({}));
            Ok(text("Tool list change notified"))
        }
        "test_trigger_prompt_change" => {
            ctx.notify("notifications/prompts/list_changed", json!({}));
            Ok(text("Prompt list change notified"))
        }
        "test_input_required_result_sampling" => sample(ctx, "What is the capital of France?", 100)
            .await
            .map(|r| text(format!("The model said: {}", field(&r, "text")))),
        "test_input_required_result_list_roots" => {
            ask(ctx, "roots/list", json!({})).await.map(|r| {
                text(format!(
                    "Roots: {}",
                    r.get("roots").cloned().unwrap_or(Value::Null)
                ))
            })
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => elicit(ctx, "Please confirm", confirm())
            .await
            .map(|r| text(format!("state-ok: confirmed={}", field(&r, "ok")))),
        "test_input_required_result_multiple_inputs" => {
            let (who, greeting, roots) = tokio::join!(
                elicit(ctx, "What is your name?", name_schema()),
                sample(ctx, "Write a greeting", 50),
                ask(ctx, "roots/list", json!({})),
            );
            match (who, greeting, roots) {
                (Ok(who), Ok(greeting), Ok(roots)) => Ok(text(format!(
                    "name={}, greeting={}, roots={}",
                    field(&who, "name"),
                    field(&greeting, "text"),
                    roots.get("roots").cloned().unwrap_or(Value::Null)
                ))),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            }
        }
        "test_input_required_result_multi_round" => {
            let who = elicit(ctx, "Step 1: What is your name?", name_schema()).await;
            let who = match who {
                Ok(w) => w,
                Err(e) => return Some(Err(e)),
            };
            elicit(
                ctx,
                "Step 2: What is your favorite color?",
                json!({"color": {"type": "string"}}),
            )
            .await
            .map(|c| {
                text(format!(
                    "{} likes {}",
                    field(&who, "name"),
                    field(&c, "color")
                ))
            })
        }
        "test_input_required_result_capabilities" => {
            let caps = ctx.session.client_capabilities();
            if caps.get("sampling").is_some() {
                sample(ctx, "Say hello", 10)
                    .await
                    .map(|r| text(format!("sampled: {}", field(&r, "text"))))
            } else if caps.get("elicitation").is_some() {
                elicit(ctx, "What is your name?", name_schema())
                    .await
                    .map(|r| text(format!("Hello, {}!", field(&r, "name"))))
            } else {
                Ok(text("The client declared neither sampling nor elicitation"))
            }
        }
        _ => return None,
    })
}

/// The prompt that asks the user before it can be built.
pub fn prompt() -> Value {
    json!({"name": "test_input_required_result_prompt", "description": "Asks the user for context, then builds the prompt"})
}

pub async fn get_prompt(ctx: &Ctx) -> Outcome {
    let r = elicit(
        ctx,
        "What context should the prompt use?",
        json!({"context": {"type": "string"}}),
    )
    .await?;
    Ok(
        json!({"messages": [{"role": "user", "content": {"type": "text",
        "text": format!("Use this context: {}", field(&r, "context"))}}]}),
    )
}
