//! Streamable HTTP towards clients, through the real binary, against stdio and
//! streamable HTTP backends.

mod common;

use std::time::Duration;

use common::*;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One gateway with the test server behind it as stdio (`local`) and as
/// streamable HTTP (`remote`).
async fn setup() -> (Proc, Proc) {
    let backend = test_server_http().await;
    let gw = gateway(json!({"mcpServers": {
        "local": stdio_service(),
        "remote": {"url": backend.url, "headers": {"X-Configured": "yes"}},
    }}))
    .await;
    (gw, backend)
}

#[tokio::test]
async fn proxies_both_backend_kinds_transparently() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        let init = c.initialize().await;
        // Unknown capability fields survive the trip.
        assert_eq!(
            init["result"]["capabilities"]["experimental"]["mcpgate-test"]["unknownField"],
            json!([1, 2, 3]),
            "{svc}"
        );
        let tools = c.request("tools/list", json!({})).await;
        let names: Vec<&str> = tools[0]["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"echo"), "{svc}: {names:?}");

        // A fractional id, unknown params and _meta pass through unchanged.
        let body = json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call",
            "params": {"name": "meta_echo", "arguments": {"x": [1, {"y": null}]},
                       "_meta": {"custom/key": "v"}, "unknownParam": true}});
        let resp = c.post(&body).send().await.expect("sent");
        let msgs = messages(resp).await;
        assert_eq!(msgs[0]["id"], json!(1.5), "{svc}");
        let echoed: Value = serde_json::from_str(&text_of(&msgs[0])).expect("json text");
        assert_eq!(echoed["arguments"], json!({"x": [1, {"y": null}]}), "{svc}");
        assert_eq!(echoed["_meta"]["custom/key"], "v", "{svc}");

        // Unknown methods reach the backend, whose error comes back as is.
        let unknown = c.request("vendor/unknownMethod", json!({"a": 1})).await;
        assert_eq!(unknown[0]["error"]["code"], -32601, "{svc}");
        assert!(
            unknown[0]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("vendor/unknownMethod")),
            "{svc}: {unknown:?}"
        );
        assert_eq!(c.delete().await, 200, "{svc}");
    }
}

#[tokio::test]
async fn progress_is_streamed_on_the_request_stream() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        c.initialize().await;
        let msgs = c
            .request(
                "tools/call",
                json!({"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok-1"}}),
            )
            .await;
        let progress: Vec<&Value> = msgs
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 3, "{svc}: {msgs:?}");
        assert_eq!(progress[0]["params"]["progressToken"], "tok-1");
        assert_eq!(text_of(msgs.last().expect("answer")), "3 steps done");
    }
}

/// The server asks the client to sample while the tool call is in flight; the
/// client answers with a POST; the tool's result carries the client's answer.
#[tokio::test]
async fn server_to_client_requests_round_trip() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        c.initialize().await;
        let resp = c
            .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "sample", "arguments": {"prompt": "2+2?"}}}))
            .send()
            .await
            .expect("sent");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/event-stream"),
            "{svc}: a request with server messages before its answer is streamed"
        );
        let mut events = resp.bytes_stream().eventsource();
        let mut answer = None;
        while let Some(Ok(ev)) = events.next().await {
            if ev.data.trim().is_empty() {
                continue;
            }
            let msg: Value = serde_json::from_str(&ev.data).expect("json");
            if msg["method"] == "sampling/createMessage" {
                assert_eq!(msg["params"]["messages"][0]["content"]["text"], "2+2?");
                let reply = json!({"jsonrpc": "2.0", "id": msg["id"],
                    "result": {"role": "assistant", "content": {"type": "text", "text": "four"}, "model": "test"}});
                let r = c.post(&reply).send().await.expect("reply sent");
                assert_eq!(r.status(), 202, "{svc}");
            } else if msg["id"] == 7 {
                answer = Some(msg);
                break;
            }
        }
        let answer = answer.expect("tool answer");
        assert_eq!(text_of(&answer), "sampled: four", "{svc}");
    }
}

#[tokio::test]
async fn session_rules() {
    let (gw, _backend) = setup().await;
    let url = format!("{}/local/mcp", gw.url);
    let mut c = Mcp::new(&url);
    // No session and not initialize: 400.
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Mcp-Session-Id"))
    );

    c.initialize().await;
    let sid = c.session.clone().expect("sid");
    assert!(sid.len() >= 22, "session ids carry at least 128 bits");

    // The trailing-slash form is the same endpoint, no redirect.
    let mut slash = Mcp::new(format!("{url}/"));
    slash.session = Some(sid.clone());
    let r = slash.request("ping", json!({})).await;
    assert_eq!(r[0]["result"], json!({}));

    // A session of one service is unknown to another.
    let mut other = Mcp::new(format!("{}/remote/mcp", gw.url));
    other.session = Some(sid.clone());
    let resp = other
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 404);

    // Notifications get 202.
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 202);

    // Unsupported MCP-Protocol-Version: 400.
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);

    // A second initialize on the session is refused.
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 10, "method": "initialize", "params": {}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);

    // DELETE ends it; afterwards the id is unknown (404) for POST, GET and DELETE.
    assert_eq!(c.delete().await, 200);
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 11, "method": "ping"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 404);
    assert_eq!(c.delete().await, 404);
}

#[tokio::test]
async fn batches_only_where_the_version_allows() {
    let (gw, _backend) = setup().await;
    let url = format!("{}/local/mcp", gw.url);
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "b"}}},
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    ]);
    let mut old = Mcp::new(&url).with_version("2025-03-26");
    old.initialize().await;
    let resp = old.post(&batch).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    let msgs = messages(resp).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let ids: Vec<&Value> = msgs.iter().map(|m| &m["id"]).collect();
    assert!(ids.contains(&&json!("a")) && ids.contains(&&json!("b")));

    let mut new = Mcp::new(&url);
    new.initialize().await;
    let resp = new.post(&batch).send().await.expect("sent");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn timeouts_name_the_service_and_the_limit() {
    let gw = gateway(json!({"mcpServers": {
        "slow": {"command": TEST_SERVER, "requestTimeout": "300ms"},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/slow/mcp", gw.url));
    c.initialize().await;
    let answer = c.call("sleep", json!({"ms": 5000})).await;
    let message = answer["error"]["message"].as_str().expect("an error");
    assert!(message.contains("\"slow\""), "{message}");
    assert!(message.contains("300ms"), "{message}");
    assert!(message.contains("requestTimeout"), "{message}");
    // The session is still usable.
    assert_eq!(
        text_of(&c.call("echo", json!({"text": "still here"})).await),
        "still here"
    );
}

/// A client that loses its SSE stream resumes it with Last-Event-ID and gets
/// what it missed, including the final answer.
#[tokio::test]
async fn resumes_a_lost_stream_with_last_event_id() {
    let (gw, _backend) = setup().await;
    let mut c = Mcp::new(format!("{}/local/mcp", gw.url));
    c.initialize().await;
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": 5}, "_meta": {"progressToken": 1}}}))
        .send()
        .await
        .expect("sent");
    let mut events = resp.bytes_stream().eventsource();
    let mut last_id = None;
    while let Some(Ok(ev)) = events.next().await {
        if !ev.data.trim().is_empty() {
            last_id = Some(ev.id.clone());
            break; // first real message: now drop the connection
        }
    }
    drop(events);
    let last_id = last_id.expect("an event id");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.clone().expect("sid"))
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("resume");
    assert_eq!(resp.status(), 200);
    let msgs = messages(resp).await;
    let progress = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 4, "missed progress replayed: {msgs:?}");
    assert_eq!(msgs.last().expect("answer")["id"], 42);
}

/// Messages the server sends outside any request reach the client's GET stream,
/// from a stdio server and from an HTTP server's own GET stream.
#[tokio::test]
async fn get_stream_carries_server_initiated_messages() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        c.initialize().await;
        let resp = c
            .http
            .get(&c.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", c.session.clone().expect("sid"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let mut events = resp.bytes_stream().eventsource();
        // The server answers first and notifies 100 ms later, outside the request.
        assert_eq!(
            text_of(&c.call("list_changed_later", json!({})).await),
            "will send"
        );
        let ev = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ev = events.next().await.expect("event").expect("ok");
                if !ev.data.trim().is_empty() {
                    return ev;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{svc}: a message on the GET stream"));
        let msg: Value = serde_json::from_str(&ev.data).expect("json");
        assert_eq!(msg["method"], "notifications/tools/list_changed", "{svc}");
    }
}

#[tokio::test]
async fn configured_headers_reach_http_backends_but_client_credentials_do_not() {
    let (gw, _backend) = setup().await;
    let mut c = Mcp::new(format!("{}/remote/mcp", gw.url));
    c.initialize().await;
    let resp = c
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "headers", "arguments": {}}}))
        .header("authorization", "Bearer client-secret-token")
        .header("cookie", "session=client-cookie")
        .send()
        .await
        .expect("sent");
    let msgs = messages(resp).await;
    let headers: Value = serde_json::from_str(&text_of(&msgs[0])).expect("json");
    assert_eq!(headers["x-configured"], "yes");
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
}

#[tokio::test]
async fn backend_sessions_end_with_client_sessions() {
    let (gw, backend) = setup().await;
    let stats = backend.url.replace("/mcp", "/stats");
    let open = || async {
        let v: Value = http()
            .get(&stats)
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        v["sessions"].as_u64().expect("count")
    };
    let before = open().await;
    let mut c = Mcp::new(format!("{}/remote/mcp", gw.url));
    c.initialize().await;
    assert_eq!(open().await, before + 1);
    assert_eq!(c.delete().await, 200);
    // The gateway sent DELETE to the backend.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open().await != before {
        assert!(
            std::time::Instant::now() < deadline,
            "backend session still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that cancels a request stops waiting for it; the gateway answers
/// the POST at once instead of holding it until the request timeout.
#[tokio::test]
async fn cancelled_requests_release_their_stream() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        c.initialize().await;
        let slow = c.post(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call",
            "params":{"name":"sleep","arguments":{"ms":600000}}}));
        let pending = tokio::spawn(async move { slow.send().await.expect("sent") });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = c
            .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow","reason":"user"}}))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 202);
        let resp = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .unwrap_or_else(|_| panic!("{svc}: the cancelled POST was answered"))
            .expect("joined");
        assert!(resp.status().is_success(), "{svc}: {}", resp.status());
        assert!(
            messages(resp).await.is_empty(),
            "{svc}: no answer for a cancelled request"
        );
        // The id is free again and the session works.
        assert_eq!(
            text_of(&c.call("echo", json!({"text": "after"})).await),
            "after"
        );
    }
}

#[tokio::test]
async fn large_answers_pass_intact() {
    let (gw, _backend) = setup().await;
    for svc in ["local", "remote"] {
        let mut c = Mcp::new(format!("{}/{svc}/mcp", gw.url));
        c.initialize().await;
        let text = text_of(&c.call("big", json!({"bytes": 3_000_000})).await);
        assert_eq!(text.len(), 3_000_000, "{svc}");
        assert!(text.bytes().all(|b| b == b'x'), "{svc}");
    }
}
