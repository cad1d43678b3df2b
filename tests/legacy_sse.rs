//! Legacy HTTP+SSE (2024-11-05), towards clients (`/<service>/sse`) and towards
//! backends (`transportType: "sse"`).

mod common;

use std::time::Duration;

use common::*;
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

async fn next_message<S, E>(events: &mut S) -> Value
where
    S: Stream<Item = Result<Event, E>> + Unpin,
    E: std::fmt::Debug,
{
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("valid event");
    assert_eq!(ev.event, "message");
    serde_json::from_str(&ev.data).expect("json")
}

/// Drive a legacy SSE session by hand: initialize, list tools, call one.
async fn exercise(base: &str, service: &str) {
    let http = http();
    let resp = http
        .get(format!("{base}/{service}/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("connect");
    assert_eq!(resp.status(), 200);
    let mut events = resp.bytes_stream().eventsource();
    let first = events.next().await.expect("event").expect("ok");
    assert_eq!(first.event, "endpoint");
    assert!(
        first
            .data
            .starts_with(&format!("/{service}/message?sessionId=")),
        "{}",
        first.data
    );
    let endpoint = format!("{base}{}", first.data);
    let post = |body: Value| {
        http.post(&endpoint)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})).await.expect("sent");
    assert_eq!(r.status(), 202);
    let init = next_message(&mut events).await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(
        post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await
            .expect("sent")
            .status(),
        202
    );
    post(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"t"}}})).await.expect("sent");
    let mut progress = 0;
    loop {
        let m = next_message(&mut events).await;
        if m["method"] == "notifications/progress" {
            progress += 1;
        } else {
            assert_eq!(m["id"], 2);
            assert_eq!(text_of(&m), "2 steps done");
            break;
        }
    }
    assert_eq!(progress, 2);
    post(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"legacy"}}})).await.expect("sent");
    assert_eq!(text_of(&next_message(&mut events).await), "legacy");
}

#[tokio::test]
async fn legacy_sse_clients_reach_stdio_backends() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    exercise(&gw.url, "svc").await;
}

#[tokio::test]
async fn closing_the_stream_ends_the_session_and_its_process() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let http = http();
    let resp = http
        .get(format!("{}/svc/sse", gw.url))
        .send()
        .await
        .expect("connect");
    let mut events = resp.bytes_stream().eventsource();
    let endpoint = format!(
        "{}{}",
        gw.url,
        events.next().await.expect("ev").expect("ok").data
    );
    let r = http
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pid","arguments":{}}}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 202);
    let pid: i32 = text_of(&next_message(&mut events).await)
        .parse()
        .expect("pid");
    drop(events);
    wait_until(
        "the legacy session's process to end",
        Duration::from_secs(10),
        || process_gone(pid),
    )
    .await;
    let r = http
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":2,"method":"ping"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
}

/// A gateway whose backend is a legacy SSE server (here: another gateway's
/// `/sse` endpoint), used by streamable HTTP and legacy clients alike.
#[tokio::test]
async fn sse_backends_serve_both_client_transports() {
    let inner = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let outer = gateway(json!({"mcpServers": {
        "old": {"transportType": "sse", "url": format!("{}/svc/sse", inner.url)},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/old/mcp", outer.url));
    c.initialize().await;
    assert_eq!(
        text_of(&c.call("echo", json!({"text": "via sse"})).await),
        "via sse"
    );
    let msgs = c
        .request(
            "tools/call",
            json!({"name": "progress", "arguments": {"steps": 2}, "_meta": {"progressToken": 5}}),
        )
        .await;
    assert_eq!(
        msgs.iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count(),
        2
    );
    // Deleting the outer session drops its SSE stream, which closes the inner one.
    assert_eq!(c.delete().await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = ready(&inner.url).await;
        if ready["services"]["svc"]["sessions"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "inner session still open: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exercise(&outer.url, "old").await;
}

#[tokio::test]
async fn an_unreachable_sse_backend_is_reported() {
    let gw = gateway(json!({"mcpServers": {
        "gone": {"transportType": "sse", "url": "http://127.0.0.1:9/sse", "startupTimeout": "2s"},
    }}))
    .await;
    let r = http()
        .get(format!("{}/gone/sse", gw.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"gone\"") && m.contains("unreachable")),
        "{body}"
    );
}
