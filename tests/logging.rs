//! Logs: structured (JSON with `--log-format json`), backends' stderr attributed
//! to their service, and no secret in them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn json_logs_attribute_backend_stderr_and_hold_no_secrets() {
    const SECRET: &str = "s3cr3t-header-value-7f2a";
    let backend = test_server_http().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        json!({"mcpServers": {
            "svc": {"command": TEST_SERVER},
            "remote": {"url": backend.url, "headers": {"Authorization": {"$env": "MCPGATE_TEST_SECRET"}}},
        }})
        .to_string(),
    )
    .expect("write");
    let mut child = Command::new(GATEWAY)
        .args([
            "serve",
            "--log-format",
            "json",
            "--addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .env("MCPGATE_TEST_SECRET", SECRET)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut out_lines = BufReader::new(stdout).lines();
    let first = out_lines.next_line().await.expect("read").expect("line");
    let url = first
        .trim_start_matches("mcpgate listening on ")
        .to_string();
    let stderr = child.stderr.take().expect("stderr");
    let collected = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });

    let mut c = Mcp::new(format!("{url}/svc/mcp"));
    c.initialize().await;
    assert_eq!(
        text_of(
            &c.call("stderr", json!({"text": "hello from the backend"}))
                .await
        ),
        "written"
    );
    let mut r = Mcp::new(format!("{url}/remote/mcp"));
    r.initialize().await;
    // The configured secret header really is sent...
    let headers: Value =
        serde_json::from_str(&text_of(&r.call("headers", json!({})).await)).expect("json");
    assert_eq!(headers["authorization"], SECRET);
    // ...and a client's own token is never logged either.
    let resp = r
        .post(&json!({"jsonrpc":"2.0","id":99,"method":"ping"}))
        .header("authorization", "Bearer client-token-9d1e")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = child.wait().await.expect("exit");
    assert!(status.success());
    let lines = collected.await.expect("joined");
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
    let attributed = lines.iter().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        v["service"] == "svc"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("hello from the backend"))
    });
    assert!(
        attributed,
        "backend stderr attributed to its service:\n{}",
        lines.join("\n")
    );
    let all = lines.join("\n");
    assert!(!all.contains(SECRET), "a configured secret reached the log");
    assert!(
        !all.contains("client-token-9d1e"),
        "a client token reached the log"
    );
    assert!(
        !all.contains(c.session.as_deref().expect("sid")),
        "a session id reached the log"
    );
}
