//! The test server's tools, resources and prompts: the ones mcpgate's own tests
//! use (echo, sleep, fail, crash, progress, sampling, elicitation, ...) and the
//! ones the public conformance suite calls (`test_*`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::Ctx;

type Outcome = Result<Value, (i64, String)>;

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn tool(name: &str, description: &str, props: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": props, "required": required},
    })
}

pub fn list() -> Vec<Value> {
    let mut tools = vec![
        tool(
            "echo",
            "Returns its text argument",
            json!({"text": {"type": "string"}}),
            &["text"],
        ),
        tool(
            "sleep",
            "Waits ms milliseconds, then answers",
            json!({"ms": {"type": "integer"}}),
            &["ms"],
        ),
        tool("fail", "Returns a tool error (isError)", json!({}), &[]),
        tool(
            "protocol_error",
            "Answers with a JSON-RPC error",
            json!({}),
            &[],
        ),
        tool("crash", "Exits the server process at once", json!({}), &[]),
        tool(
            "progress",
            "Sends `steps` progress notifications",
            json!({"steps": {"type": "integer"}}),
            &[],
        ),
        tool(
            "sample",
            "Asks the client to sample (sampling/createMessage)",
            json!({"prompt": {"type": "string"}}),
            &[],
        ),
        tool(
            "elicit",
            "Asks the client for input (elicitation/create)",
            json!({"message": {"type": "string"}}),
            &[],
        ),
        tool(
            "roots",
            "Asks the client for its roots (roots/list)",
            json!({}),
            &[],
        ),
        tool(
            "log",
            "Sends a notifications/message log entry",
            json!({"message": {"type": "string"}}),
            &[],
        ),
        tool(
            "env",
            "Returns an environment variable of the server process",
            json!({"name": {"type": "string"}}),
            &["name"],
        ),
        tool("pid", "Returns the server's process id", json!({}), &[]),
        tool(
            "stderr",
            "Writes its text to the server's stderr",
            json!({"text": {"type": "string"}}),
            &["text"],
        ),
        tool(
            "spawn_child",
            "Starts a long-lived grandchild process and returns its pid",
            json!({}),
            &[],
        ),
        tool(
            "ignore_sigterm",
            "Makes the server ignore SIGTERM",
            json!({}),
            &[],
        ),
        tool(
            "ignore_eof",
            "Makes the server keep running when its stdin closes (a badly behaved server)",
            json!({}),
            &[],
        ),
        tool(
            "big",
            "Returns `bytes` bytes of text",
            json!({"bytes": {"type": "integer"}}),
            &["bytes"],
        ),
        tool(
            "meta_echo",
            "Returns its arguments and _meta as JSON text",
            json!({}),
            &[],
        ),
        tool(
            "headers",
            "HTTP mode: returns the request headers it received",
            json!({}),
            &[],
        ),
        tool(
            "list_changed",
            "Sends notifications/tools/list_changed",
            json!({}),
            &[],
        ),
    ];
    tools.extend(crate::conformance::tools());
    tools.extend(crate::rounds::tools());
    // MCP_TEST_TOOLS=N: exactly N tools (the first ones, then `extra_<i>`), for
    // benchmarks of large lists. Every tool stays callable either way.
    if let Some(n) = std::env::var("MCP_TEST_TOOLS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        tools.truncate(n);
        for i in tools.len()..n {
            tools.push(tool(
                &format!("extra_{i}"),
                "A padding tool for benchmarks; answers like echo",
                json!({"text": {"type": "string"}}),
                &["text"],
            ));
        }
    }
    tools
}

fn arg<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    params.get("arguments").and_then(|a| a.get(name))
}

pub async fn call(params: &Value, ctx: &Ctx) -> Outcome {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let progress_token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    match name {
        "echo" => Ok(text(
            arg(params, "text").and_then(Value::as_str).unwrap_or(""),
        )),
        "sleep" => {
            let ms = arg(params, "ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(text(format!("slept {ms} ms")))
        }
        "fail" => Ok(
            json!({"content": [{"type": "text", "text": "this tool always fails"}], "isError": true}),
        ),
        "protocol_error" => Err((-32050, "a protocol-level error from the test server".into())),
        "crash" => std::process::exit(3),
        "progress" => {
            let steps = arg(params, "steps").and_then(Value::as_u64).unwrap_or(3);
            if let Some(tok) = &progress_token {
                for i in 1..=steps {
                    ctx.notify(
                        "notifications/progress",
                        json!({"progressToken": tok, "progress": i, "total": steps, "message": format!("step {i}")}),
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Ok(text(format!("{steps} steps done")))
        }
        "sample" => {
            let prompt = arg(params, "prompt")
                .and_then(Value::as_str)
                .unwrap_or("hello");
            let said = ctx.sample(prompt).await?;
            Ok(text(format!("sampled: {said}")))
        }
        "elicit" => {
            let message = arg(params, "message")
                .and_then(Value::as_str)
                .unwrap_or("Your name?");
            let r = ctx
                .request(
                    "elicitation/create",
                    json!({"message": message, "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}),
                )
                .await
                .map_err(|e| (-32603, e))?;
            Ok(text(format!("elicited: {r}")))
        }
        "roots" => {
            let r = ctx
                .request("roots/list", json!({}))
                .await
                .map_err(|e| (-32603, e))?;
            Ok(text(format!("roots: {r}")))
        }
        "log" => {
            let message = arg(params, "message")
                .and_then(Value::as_str)
                .unwrap_or("log entry");
            ctx.notify(
                "notifications/message",
                json!({"level": "info", "logger": "test", "data": message}),
            );
            Ok(text("logged"))
        }
        "env" => {
            let var = arg(params, "name").and_then(Value::as_str).unwrap_or("");
            Ok(text(
                std::env::var(var).unwrap_or_else(|_| "<unset>".into()),
            ))
        }
        "pid" => Ok(text(std::process::id().to_string())),
        "stderr" => {
            let t = arg(params, "text").and_then(Value::as_str).unwrap_or("");
            eprintln!("{t}");
            Ok(text("written"))
        }
        "spawn_child" => {
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .spawn()
                .map_err(|e| (-32603, e.to_string()))?;
            let pid = child.id();
            // Deliberately not waited for: the gateway must clean it up.
            std::mem::forget(child);
            Ok(text(pid.to_string()))
        }
        "ignore_sigterm" => {
            // SAFETY: installing SIG_IGN has no handler code to be unsafe.
            unsafe {
                let _ = nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGTERM,
                    nix::sys::signal::SigHandler::SigIgn,
                );
            }
            Ok(text("ignoring SIGTERM"))
        }
        "ignore_eof" => {
            crate::IGNORE_EOF.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(text("ignoring the end of stdin"))
        }
        "big" => {
            let n = arg(params, "bytes").and_then(Value::as_u64).unwrap_or(1000) as usize;
            Ok(text("x".repeat(n)))
        }
        "meta_echo" => Ok(text(
            json!({"arguments": params.get("arguments"), "_meta": params.get("_meta")}).to_string(),
        )),
        "headers" => Ok(text(ctx.headers.clone().unwrap_or(json!({})).to_string())),
        "list_changed_later" => {
            let session = ctx.session.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Over HTTP the client's GET stream may open a moment later:
                // wait for it (up to 5 s) rather than drop the message.
                for _ in 0..250 {
                    let listener = session.listener.lock().ok().and_then(|l| l.clone());
                    if let Some(out) = listener {
                        let _ = out.send(
                            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
                        );
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            Ok(text("will send"))
        }
        "list_changed" => {
            ctx.notify("notifications/tools/list_changed", json!({}));
            Ok(text("sent"))
        }
        other => match crate::rounds::call(other, ctx).await {
            Some(outcome) => outcome,
            None => crate::conformance::call(other, params, ctx, progress_token).await,
        },
    }
}

pub fn resources() -> Value {
    crate::conformance::resources()
}

pub fn resource_templates() -> Value {
    crate::conformance::resource_templates()
}

pub fn read_resource(params: &Value) -> Outcome {
    crate::conformance::read_resource(params)
}

pub fn prompts() -> Value {
    let mut p = crate::conformance::prompts();
    if let Some(list) = p.get_mut("prompts").and_then(Value::as_array_mut) {
        list.push(crate::rounds::prompt());
    }
    p
}

pub async fn get_prompt(params: &Value, ctx: &Ctx) -> Outcome {
    if params.get("name").and_then(Value::as_str) == Some("test_input_required_result_prompt") {
        return crate::rounds::get_prompt(ctx).await;
    }
    crate::conformance::get_prompt(params)
}

pub fn complete(params: &Value) -> Value {
    crate::conformance::complete(params)
}
