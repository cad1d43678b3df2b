//! The aggregated endpoint `/mcp`, end to end through the real binary: real
//! backends of every transport behind it, namespaced names, routing of calls,
//! resources, progress and server-to-client requests, pagination across
//! services, lazy starts with the discovery cache, and a backend that fails
//! or dies dropping out while the others keep working.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn names(answer: &Value, field: &str, key: &str) -> Vec<String> {
    answer["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {answer}"))
        .iter()
        .map(|t| t[key].as_str().expect("a name").to_string())
        .collect()
}

/// The HTTP status of an `initialize` at `url`.
async fn initialize_status(url: &str) -> reqwest::StatusCode {
    http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}).to_string())
        .send()
        .await
        .unwrap()
        .status()
}

async fn tool_names(c: &mut Mcp) -> Vec<String> {
    let msgs = c.request("tools/list", json!({})).await;
    names(msgs.last().expect("answer"), "tools", "name")
}

/// stdio, streamable HTTP and legacy SSE backends, side by side at `/mcp`.
#[tokio::test]
async fn every_transport_behind_one_endpoint() {
    let remote = test_server_http().await;
    let inner = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let gw = gateway(json!({"mcpServers": {
        "local": stdio_service(),
        "remote": {"url": remote.url},
        "old": {"transportType": "sse", "url": format!("{}/svc/sse", inner.url)},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/mcp", gw.url));
    let init = c.initialize().await;
    let result = &init["result"];
    assert!(
        result["serverInfo"]["name"]
            .as_str()
            .unwrap()
            .starts_with("mcpgate"),
        "{init}"
    );
    assert_eq!(result["protocolVersion"], "2025-11-25");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(result["capabilities"]["resources"]["subscribe"], true);
    let instructions = result["instructions"].as_str().expect("instructions");
    for svc in ["local", "remote", "old"] {
        assert!(
            instructions.contains(&format!("## {svc}\nA test server")),
            "{instructions}"
        );
    }

    let tools = tool_names(&mut c).await;
    for svc in ["local", "remote", "old"] {
        assert!(tools.contains(&format!("{svc}_echo")), "{tools:?}");
    }
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("local_") || t.starts_with("remote_") || t.starts_with("old_")),
        "every name is namespaced: {tools:?}"
    );
    assert_eq!(
        tools.len(),
        tools.iter().collect::<HashSet<_>>().len(),
        "no duplicates"
    );
    for svc in ["local", "remote", "old"] {
        let answer = c
            .call(
                &format!("{svc}_echo"),
                json!({"text": format!("via {svc}")}),
            )
            .await;
        assert_eq!(text_of(&answer), format!("via {svc}"));
    }
    // The headers tool exists only on the HTTP server: it proves where the call went.
    let headers = c.call("remote_headers", json!({})).await;
    assert!(text_of(&headers).contains("mcp-session-id"), "{headers}");

    // Progress keeps the client's own token.
    let msgs = c
        .request(
            "tools/call",
            json!({"name": "remote_progress", "arguments": {"steps": 2}, "_meta": {"progressToken": "p-1"}}),
        )
        .await;
    let progress: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-1")
    );

    // Resources: URIs are namespaced both ways; prompts by name.
    let msgs = c.request("resources/list", json!({})).await;
    let uris = names(msgs.last().unwrap(), "resources", "uri");
    assert!(
        uris.contains(&"old+test://static-text".to_string()),
        "{uris:?}"
    );
    let msgs = c
        .request("resources/read", json!({"uri": "old+test://static-text"}))
        .await;
    let read = msgs.last().unwrap();
    assert_eq!(
        read["result"]["contents"][0]["uri"], "old+test://static-text",
        "{read}"
    );
    let msgs = c.request("resources/templates/list", json!({})).await;
    let templates = names(msgs.last().unwrap(), "resourceTemplates", "uriTemplate");
    assert!(
        templates.iter().any(|t| t.starts_with("local+")),
        "{templates:?}"
    );
    let msgs = c.request("prompts/list", json!({})).await;
    let prompts = names(msgs.last().unwrap(), "prompts", "name");
    let prompt = prompts
        .iter()
        .find(|p| p.starts_with("remote_"))
        .expect("a remote prompt")
        .clone();
    let msgs = c
        .request(
            "prompts/get",
            json!({"name": prompt, "arguments": {"arg1": "x", "arg2": "y"}}),
        )
        .await;
    assert!(
        msgs.last().unwrap()["result"]["messages"].is_array(),
        "{msgs:?}"
    );

    // An unknown name, and one without a service, get the MCP "unknown tool" error.
    for name in ["local_nope", "nope", "ghost_echo"] {
        let answer = c.call(name, json!({})).await;
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        assert_eq!(answer["error"]["message"], format!("Unknown tool: {name}"));
    }

    // Legacy SSE clients reach the same endpoint at /sse.
    let http = http();
    let resp = http
        .get(format!("{}/sse", gw.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 200);
    let mut events = resp.bytes_stream().eventsource();
    let endpoint = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("endpoint event")
        .expect("open")
        .expect("event");
    assert_eq!(endpoint.event, "endpoint");
    assert!(
        endpoint.data.starts_with("/message?sessionId="),
        "{}",
        endpoint.data
    );
    let post = |body: Value| {
        http.post(format!("{}{}", gw.url, endpoint.data))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    post(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}))
        .await
        .expect("sent");
    let mut next = async || loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .expect("open")
            .expect("event");
        let v: Value = serde_json::from_str(&ev.data).expect("json");
        if v.get("id").is_some() {
            return v;
        }
    };
    assert_eq!(next().await["result"]["protocolVersion"], "2024-11-05");
    post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await
        .expect("sent");
    post(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"local_echo","arguments":{"text":"legacy"}}}))
        .await
        .expect("sent");
    assert_eq!(text_of(&next().await), "legacy");
}

/// Two backends ask the client to sample at the same time: each request
/// reaches the client under its own id, and each answer goes back to the
/// backend that asked.
#[tokio::test]
async fn server_requests_from_two_backends_at_once() {
    let remote = test_server_http().await;
    let gw = gateway(json!({"mcpServers": {
        "a": stdio_service(),
        "b": {"url": remote.url},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/mcp", gw.url));
    c.initialize().await;
    let run = |tool: &'static str, id: u64, prompt: &'static str| {
        let resp = c
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": {"prompt": prompt}}}))
            .send();
        let c2 = c.same_session();
        async move {
            let resp = resp.await.expect("sent");
            let mut events = resp.bytes_stream().eventsource();
            let mut asked = None;
            while let Some(Ok(ev)) = events.next().await {
                if ev.data.trim().is_empty() {
                    continue;
                }
                let msg: Value = serde_json::from_str(&ev.data).expect("json");
                if msg["method"] == "sampling/createMessage" {
                    let text = msg["params"]["messages"][0]["content"]["text"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(
                        text, prompt,
                        "{tool}'s request came on its own call's stream"
                    );
                    asked = Some(msg["id"].clone());
                    let reply = json!({"jsonrpc": "2.0", "id": msg["id"],
                        "result": {"role": "assistant", "content": {"type": "text", "text": format!("answer to {text}")}, "model": "t"}});
                    assert_eq!(c2.post(&reply).send().await.expect("reply").status(), 202);
                } else if msg["id"] == id {
                    return (asked.expect("a sampling request came first"), msg);
                }
            }
            panic!("the stream of {tool} ended without an answer");
        }
    };
    let (one, two) = tokio::join!(run("a_sample", 11, "from-a"), run("b_sample", 12, "from-b"));
    assert_ne!(one.0, two.0, "the two server requests have distinct ids");
    assert_eq!(text_of(&one.1), "sampled: answer to from-a");
    assert_eq!(text_of(&two.1), "sampled: answer to from-b");
}

/// Pages never exceed the page size, and the cursors walk every service.
/// A backend's `list_changed` reaches the client.
#[tokio::test]
async fn lists_page_across_services_and_changes_are_forwarded() {
    let gw = gateway(json!({
        "proxy": {"aggregate": {"pageSize": 7}},
        "mcpServers": {"a": stdio_service(), "b": stdio_service()},
    }))
    .await;
    let mut c = Mcp::new(format!("{}/mcp", gw.url));
    c.initialize().await;
    let mut all = Vec::new();
    let mut cursor: Option<Value> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(cur) => json!({"cursor": cur}),
            None => json!({}),
        };
        let msgs = c.request("tools/list", params).await;
        let page = msgs.last().unwrap();
        let n = names(page, "tools", "name");
        assert!(n.len() <= 7, "page of {}", n.len());
        all.extend(n);
        pages += 1;
        match page["result"].get("nextCursor") {
            Some(next) => cursor = Some(next.clone()),
            None => break,
        }
        assert!(pages < 100, "cursors do not end");
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no item twice across pages");
    assert!(all.contains(&"a_echo".to_string()) && all.contains(&"b_echo".to_string()));
    assert_eq!(
        all.iter().filter(|t| t.starts_with("a_")).count(),
        all.iter().filter(|t| t.starts_with("b_")).count()
    );
    let bad = c
        .request("tools/list", json!({"cursor": "not-a-cursor"}))
        .await;
    assert_eq!(bad.last().unwrap()["error"]["code"], -32602);

    let msgs = c
        .request(
            "tools/call",
            json!({"name": "b_list_changed", "arguments": {}}),
        )
        .await;
    assert!(
        msgs.iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "{msgs:?}"
    );
}

/// A warm discovery cache answers `tools/list` with no backend running; the
/// first call starts only the backend it needs.
#[tokio::test]
async fn backends_start_lazily_and_lists_come_from_the_cache() {
    let gw = gateway(json!({"mcpServers": {"a": stdio_service(), "b": stdio_service()}})).await;
    let processes = |r: &Value, s: &str| r["services"][s]["processes"].as_u64().unwrap();
    // The first session fills the cache (starting both), then ends.
    let mut first = Mcp::new(format!("{}/mcp", gw.url));
    first.initialize().await;
    let before = tool_names(&mut first).await;
    assert_eq!(first.delete().await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = ready(&gw.url).await;
        if processes(&r, "a") == 0 && processes(&r, "b") == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "processes left: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Mcp::new(format!("{}/mcp", gw.url));
    c.initialize().await;
    assert_eq!(tool_names(&mut c).await, before);
    let r = ready(&gw.url).await;
    assert_eq!((processes(&r, "a"), processes(&r, "b")), (0, 0), "{r}");
    assert_eq!(text_of(&c.call("b_echo", json!({"text": "x"})).await), "x");
    let r = ready(&gw.url).await;
    assert_eq!((processes(&r, "a"), processes(&r, "b")), (0, 1), "{r}");
}

/// A backend that cannot start is left out (with its reason in /ready); one
/// that dies fails its own calls, drops out of the lists, and comes back.
#[tokio::test]
async fn failing_backends_drop_out_and_come_back() {
    let gw = gateway(json!({"mcpServers": {
        "a": stdio_service(),
        "b": stdio_service(),
        "broken": {"command": "/nonexistent/mcp-server"},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/mcp", gw.url));
    let init = c.initialize().await;
    assert!(init["result"].is_object(), "{init}");
    let tools = tool_names(&mut c).await;
    assert!(tools.iter().any(|t| t.starts_with("a_")) && tools.iter().any(|t| t.starts_with("b_")));
    assert!(!tools.iter().any(|t| t.starts_with("broken_")), "{tools:?}");
    let r = ready(&gw.url).await;
    assert!(
        r["services"]["broken"]["lastError"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("broken")),
        "{r}"
    );

    let crashed = c.call("a_crash", json!({})).await;
    assert!(
        crashed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("a stopped")),
        "{crashed}"
    );
    let tools = tool_names(&mut c).await;
    assert!(
        !tools.iter().any(|t| t.starts_with("a_")),
        "a dropped out: {tools:?}"
    );
    assert_eq!(
        text_of(&c.call("b_echo", json!({"text": "still"})).await),
        "still"
    );
    // After the pause it is tried again, and it is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tool_names(&mut c).await.iter().any(|t| t == "a_echo") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a never came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        text_of(&c.call("a_echo", json!({"text": "back"})).await),
        "back"
    );
}

/// Names that could collide are refused when the configuration is read.
#[tokio::test]
async fn colliding_names_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let write = |delimiter: &str, a: &str, b: &str| {
        std::fs::write(
            &path,
            json!({
                "proxy": {"aggregate": {"delimiter": delimiter}},
                "mcpServers": {a: stdio_service(), b: stdio_service()},
            })
            .to_string(),
        )
        .unwrap();
    };
    // With `__`, `x` + `__` + `_y` and `x_` + `__` + `y` would both read `x___y`.
    write("__", "x", "x_");
    let out = cli([std::ffi::OsStr::new("check-config"), path.as_os_str()]);
    assert!(!out.status.success(), "x and x_ collide with __");
    write("_", "git", "git_hub");
    let out = cli([std::ffi::OsStr::new("check-config"), path.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("proxy.aggregate.delimiter") && text.contains("could collide"),
        "{text}"
    );
    write("__", "git", "git_hub");
    cli_ok([std::ffi::OsStr::new("check-config"), path.as_os_str()]);
}

/// Named groups serve a subset at `/<group>/mcp`; `/mcp` can be turned off,
/// or moved (`path`).
#[tokio::test]
async fn groups_serve_a_subset() {
    let gw = gateway(json!({
        "proxy": {"aggregate": {"enabled": false, "groups": {"eng": {"services": ["b"]}}}},
        "mcpServers": {"a": stdio_service(), "b": stdio_service()},
    }))
    .await;
    let mut c = Mcp::new(format!("{}/eng/mcp", gw.url));
    c.initialize().await;
    let tools = tool_names(&mut c).await;
    assert!(tools.iter().all(|t| t.starts_with("b_")), "{tools:?}");
    assert_eq!(initialize_status(&format!("{}/mcp", gw.url)).await, 404);

    let moved = gateway(json!({
        "proxy": {"aggregate": {"path": "/all/mcp"}},
        "mcpServers": {"a": stdio_service(), "b": stdio_service()},
    }))
    .await;
    let mut c = Mcp::new(format!("{}/all/mcp", moved.url));
    c.initialize().await;
    let tools = tool_names(&mut c).await;
    assert!(tools.contains(&"a_echo".to_string()) && tools.contains(&"b_echo".to_string()));
    assert_eq!(initialize_status(&format!("{}/mcp", moved.url)).await, 404);
}
