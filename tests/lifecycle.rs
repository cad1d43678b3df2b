//! Process lifecycle: no process outlives its session or the gateway, whatever
//! clients and backends do.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

async fn pid_of(c: &mut Mcp) -> i32 {
    text_of(&c.call("pid", json!({})).await)
        .parse()
        .expect("pid")
}

#[tokio::test]
async fn nothing_survives_abuse_and_shutdown() {
    let mut gw = gateway(json!({
        "proxy": {"shutdownGrace": "1s"},
        "mcpServers": {"svc": stdio_service()}
    }))
    .await;
    let url = format!("{}/svc/mcp", gw.url);
    let mut pids: Vec<i32> = Vec::new();
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = Mcp::new(&url);
        c.initialize().await;
        pids.push(pid_of(&mut c).await);
        if i % 2 == 0 {
            // A grandchild in the server's process group.
            let child: i32 = text_of(&c.call("spawn_child", json!({})).await)
                .parse()
                .expect("pid");
            pids.push(child);
        }
        if i % 3 == 0 {
            // A server that ignores SIGTERM: only SIGKILL ends it.
            assert_eq!(
                text_of(&c.call("ignore_sigterm", json!({})).await),
                "ignoring SIGTERM"
            );
        }
        clients.push(c);
    }
    // A crash with a grandchild left behind.
    let mut crasher = clients.pop().expect("client");
    let _ = crasher.call("crash", json!({})).await;
    // A client dropped in the middle of a request.
    let dropper = clients.pop().expect("client");
    let req = dropper.post(&json!({"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}}));
    let inflight = tokio::spawn(async move { req.send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    inflight.abort();
    // Two sessions ended properly: their processes go at once.
    for _ in 0..2 {
        let mut c = clients.pop().expect("client");
        let pid = pid_of(&mut c).await;
        assert_eq!(c.delete().await, 200);
        wait_until(
            "a deleted session's process to end",
            Duration::from_secs(10),
            || process_gone(pid),
        )
        .await;
    }
    // Sessions still open (some with SIGTERM ignored) end with the gateway.
    kill(Pid::from_raw(gw.pid()), Signal::SIGTERM).expect("signal gateway");
    let status = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .expect("gateway exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    wait_until(
        "every backend process and grandchild to be gone (no zombies)",
        Duration::from_secs(5),
        || pids.iter().all(|p| process_gone(*p)),
    )
    .await;
    let left: Vec<(i32, Option<String>)> = pids
        .iter()
        .filter(|p| !process_gone(**p))
        .map(|p| (*p, process_state(*p)))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_crashing_backend_fails_pending_requests_at_once_and_ends_the_session() {
    let gw =
        gateway(json!({"mcpServers": {"svc": {"command": TEST_SERVER, "requestTimeout": "10m"}}}))
            .await;
    let url = format!("{}/svc/mcp", gw.url);
    let mut c = Mcp::new(&url);
    c.initialize().await;
    let pid = pid_of(&mut c).await;
    let slow = c.post(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"sleep","arguments":{"ms":600000}}}));
    let pending = tokio::spawn(async move { messages(slow.send().await.expect("sent")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crash = c.call("crash", json!({})).await;
    assert!(
        crash["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exited")),
        "{crash}"
    );
    // Long before the 10-minute request timeout, the pending call has its error.
    let answer = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("answered without waiting for the timeout")
        .expect("joined");
    let msg = answer[0]["error"]["message"].as_str().expect("error");
    assert!(
        msg.contains("\"svc\"") && msg.contains("stopped before answering"),
        "{msg}"
    );
    // The session is gone.
    assert_eq!(c.ping_status().await, 404);
    wait_until(
        "the crashed process to be reaped",
        Duration::from_secs(5),
        || process_gone(pid),
    )
    .await;
    // /ready says what happened.
    let ready = ready(&gw.url).await;
    assert_eq!(ready["services"]["svc"]["sessions"], 0, "{ready}");
    assert_eq!(ready["services"]["svc"]["processes"], 0, "{ready}");
    assert!(
        ready["services"]["svc"]["lastError"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exited")),
        "{ready}"
    );
}

#[tokio::test]
async fn idle_sessions_end_with_their_process() {
    let gw =
        gateway(json!({"mcpServers": {"svc": {"command": TEST_SERVER, "idleTimeout": "500ms"}}}))
            .await;
    let mut c = Mcp::new(format!("{}/svc/mcp", gw.url));
    c.initialize().await;
    let pid = pid_of(&mut c).await;
    wait_until(
        "the idle session's process to end",
        Duration::from_secs(10),
        || process_gone(pid),
    )
    .await;
    assert_eq!(c.ping_status().await, 404);
}

#[tokio::test]
async fn session_limit_is_enforced_with_a_clear_error() {
    let gw =
        gateway(json!({"mcpServers": {"svc": {"command": TEST_SERVER, "maxSessions": 2}}})).await;
    let url = format!("{}/svc/mcp", gw.url);
    let mut a = Mcp::new(&url);
    a.initialize().await;
    let mut b = Mcp::new(&url);
    b.initialize().await;
    let r = Mcp::new(&url)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("maxSessions")),
        "{body}"
    );
    // Closing one frees a slot.
    assert_eq!(a.delete().await, 200);
    let mut c = Mcp::new(&url);
    c.initialize().await;
}

#[tokio::test]
async fn a_backend_that_cannot_start_is_reported() {
    let gw =
        gateway(json!({"mcpServers": {"broken": {"command": "/nonexistent/mcp-server"}}})).await;
    let r = Mcp::new(format!("{}/broken/mcp", gw.url))
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("mcp-session-id").is_none());
    let body: Value = r.json().await.expect("json");
    let msg = body["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("\"broken\"") && msg.contains("/nonexistent/mcp-server"),
        "{msg}"
    );
}

#[tokio::test]
async fn stdio_servers_get_only_path_home_and_their_configured_environment() {
    let gw = gateway_with_env(
        json!({"mcpServers": {"svc": {"command": TEST_SERVER, "env": {"GIVEN": "yes"}}}}),
        &[("MCPGATE_PRIVATE", "gateway-only")],
    )
    .await;
    let mut c = Mcp::new(format!("{}/svc/mcp", gw.url));
    c.initialize().await;
    assert_eq!(
        text_of(&c.call("env", json!({"name": "GIVEN"})).await),
        "yes"
    );
    assert_eq!(
        text_of(&c.call("env", json!({"name": "MCPGATE_PRIVATE"})).await),
        "<unset>"
    );
    assert_ne!(
        text_of(&c.call("env", json!({"name": "PATH"})).await),
        "<unset>"
    );
}

#[tokio::test]
async fn sigint_stops_the_gateway_and_its_servers_like_sigterm() {
    let mut gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let mut c = Mcp::new(format!("{}/svc/mcp", gw.url));
    c.initialize().await;
    let pid = pid_of(&mut c).await;
    kill(Pid::from_raw(gw.pid()), Signal::SIGINT).expect("signal gateway");
    let status = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .expect("gateway exits after SIGINT")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    wait_until("the server process to end", Duration::from_secs(5), || {
        process_gone(pid)
    })
    .await;
}

#[tokio::test]
async fn no_server_outlives_a_killed_gateway() {
    // SIGKILL leaves the gateway no chance to clean up: its stdio servers must
    // still go (the kernel ends them when it dies), even servers that ignore
    // the end of their stdin, one that ignores SIGTERM, one busy in a call.
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let url = format!("{}/svc/mcp", gw.url);
    let mut pids = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = Mcp::new(&url);
        c.initialize().await;
        pids.push(pid_of(&mut c).await);
        if i == 0 {
            c.call("ignore_sigterm", json!({})).await;
        }
        // A server that keeps running when its stdin closes.
        c.call("ignore_eof", json!({})).await;
        clients.push(c);
    }
    let busy = clients[1].post(&json!({"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}}));
    let inflight = tokio::spawn(async move { busy.send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(Pid::from_raw(gw.pid()), Signal::SIGKILL).expect("kill the gateway");
    wait_until(
        "every server of the killed gateway ended",
        Duration::from_secs(10),
        || pids.iter().all(|p| process_gone(*p)),
    )
    .await;
    inflight.abort();
}
