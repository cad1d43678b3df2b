//! Bad input gets a clear error (HTTP status and JSON-RPC error), never a panic,
//! and never disturbs other sessions.

mod common;

use common::*;
use serde_json::{Value, json};

async fn body_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

#[tokio::test]
async fn every_bad_request_gets_a_clear_answer_and_others_are_unaffected() {
    let gw =
        gateway(json!({"proxy": {"maxBodyBytes": 4096}, "mcpServers": {"svc": stdio_service()}}))
            .await;
    let url = format!("{}/svc/mcp", gw.url);
    // A healthy session that must survive everything below.
    let mut good = Mcp::new(&url);
    good.initialize().await;
    let sid = good.session.clone().expect("sid");
    let http = http();
    let post = |body: &'static str, ct: &'static str, accept: &'static str| {
        http.post(&url)
            .header("content-type", ct)
            .header("accept", accept)
            .header("mcp-session-id", &sid)
            .body(body)
    };
    const BOTH: &str = "application/json, text/event-stream";

    let r = post("{not json", "application/json", BOTH)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    assert_eq!(body_of(r).await["error"]["code"], -32700);

    let r = post(
        r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
        "application/json",
        BOTH,
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(r.status(), 400);
    assert_eq!(body_of(r).await["error"]["code"], -32600);

    let r = post(r#"{"id":1,"method":"ping"}"#, "application/json", BOTH)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let b = body_of(r).await;
    assert_eq!(b["error"]["code"], -32600);
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("jsonrpc")),
        "{b}"
    );

    let r = post(
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        "text/plain",
        BOTH,
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(r.status(), 415);
    assert!(
        body_of(r).await["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Content-Type"))
    );

    let r = post(
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        "application/json",
        "application/json",
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(r.status(), 406);

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", BOTH)
        .header("mcp-session-id", &sid)
        .body(big)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 413);
    assert!(
        body_of(r).await["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("4096"))
    );

    let r = http
        .post(format!("{}/nope/mcp", gw.url))
        .header("content-type", "application/json")
        .header("accept", BOTH)
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    assert!(
        body_of(r).await["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"nope\""))
    );

    let r = http
        .get(format!("{}/no/such/path", gw.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    assert!(body_of(r).await["error"]["message"].is_string());

    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", BOTH)
        .header("mcp-session-id", "forged-session-id")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);

    // A request id already in flight is refused, the first request unharmed.
    let slow = good.post(&json!({"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"sleep","arguments":{"ms":300}}}));
    let first = tokio::spawn(async move { messages(slow.send().await.expect("sent")).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = good
        .post(&json!({"jsonrpc":"2.0","id":"dup","method":"ping"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let first = first.await.expect("joined");
    assert_eq!(text_of(&first[0]), "slept 300 ms");

    // After all of that, the good session still works.
    assert_eq!(
        text_of(&good.call("echo", json!({"text": "fine"})).await),
        "fine"
    );
}

#[tokio::test]
async fn foreign_origins_and_hosts_are_refused() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let url = format!("{}/svc/mcp", gw.url);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    let send = |origin: Option<&str>, host: Option<&str>| {
        let mut r = http()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r.send()
    };
    let r = send(Some("https://evil.example"), None)
        .await
        .expect("sent");
    assert_eq!(r.status(), 403);
    assert!(
        body_of(r).await["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allowedOrigins"))
    );
    let r = send(None, Some("evil.example:8080")).await.expect("sent");
    assert_eq!(r.status(), 403);
    // Local browser tools (e.g. the MCP Inspector) are fine.
    let r = send(Some("http://localhost:6274"), None)
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:6274",
        "CORS answers allowed browser origins"
    );
    // A preflight is answered before anything else and exposes the session header.
    let r = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, mcp-session-id",
        )
        .send()
        .await
        .expect("sent");
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(allowed.contains("mcp-session-id"), "{allowed}");
    // A foreign origin's preflight gets no CORS grant.
    let r = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("sent");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sessionless_2026_requests_learn_the_supported_versions() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let r = http()
        .post(format!("{}/svc/mcp", gw.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{
                "io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities":{}}}})
            .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let b = body_of(r).await;
    assert_eq!(b["id"], 1);
    assert_eq!(
        b["error"]["code"], -32000,
        "a legacy server's answer, so clients fall back"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Unsupported protocol version")),
        "{b}"
    );
    assert_eq!(b["error"]["data"]["requested"], "2026-07-28");
    let supported = b["error"]["data"]["supported"].as_array().expect("list");
    assert!(supported.contains(&json!("2025-11-25")), "{b}");
}

#[tokio::test]
async fn oversized_and_garbage_input_on_the_legacy_endpoint() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let r = http()
        .post(format!("{}/svc/message", gw.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400, "sessionId is required");
    let r = http()
        .post(format!("{}/svc/message?sessionId=unknown", gw.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
}
