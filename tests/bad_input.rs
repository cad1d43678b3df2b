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

/// A sessionless request is MCP 2026-07-28 by its header; each way of getting
/// it wrong has its own status and code, and echoes the request's id.
#[tokio::test]
async fn sessionless_requests_are_checked_as_2026_07_28() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let meta = |v: &str| {
        json!({"io.modelcontextprotocol/protocolVersion": v,
               "io.modelcontextprotocol/clientCapabilities": {}})
    };
    let send = |header: &'static str, method: &'static str, params: Value| {
        let url = format!("{}/svc/mcp", gw.url);
        async move {
            let r = http()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", header)
                .header("mcp-method", method)
                .body(json!({"jsonrpc":"2.0","id":41,"method":method,"params":params}).to_string())
                .send()
                .await
                .expect("sent");
            (r.status().as_u16(), body_of(r).await)
        }
    };
    // Right: the backend's identity and capabilities.
    let (status, b) = send(
        "2026-07-28",
        "server/discover",
        json!({"_meta": meta("2026-07-28")}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(
        b["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-test-server"
    );
    // No _meta: -32602.
    let (status, b) = send("2026-07-28", "server/discover", json!({})).await;
    assert_eq!(
        (status, b["error"]["code"].as_i64(), b["id"].as_i64()),
        (400, Some(-32602), Some(41)),
        "{b}"
    );
    // Header and body disagree: -32020.
    let (status, b) = send(
        "2026-07-28",
        "server/discover",
        json!({"_meta": meta("v999")}),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{b}"
    );
    // A version nobody speaks: -32022, naming what the gateway speaks.
    let (status, b) = send("v999", "server/discover", json!({"_meta": meta("v999")})).await;
    assert_eq!(
        (status, b["error"]["code"].as_i64()),
        (400, Some(-32022)),
        "{b}"
    );
    assert_eq!(
        b["error"]["data"],
        json!({"supported": ["2026-07-28"], "requested": "v999"})
    );
    // Session-era methods: 404 -32601.
    let (status, b) = send(
        "2026-07-28",
        "initialize",
        json!({"_meta": meta("2026-07-28")}),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_i64()),
        (404, Some(-32601)),
        "{b}"
    );
    // A GET stream does not exist in 2026-07-28.
    let r = http()
        .get(format!("{}/svc/mcp", gw.url))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
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
