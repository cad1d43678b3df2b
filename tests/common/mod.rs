//! Shared fixtures: start the real `mcpgate` binary and the test MCP server as
//! processes on loopback, and speak MCP to them over real HTTP.
#![allow(dead_code)]

pub mod modern;
pub mod oauth;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_mcpgate");
pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

/// A child process that is killed when the test drops it.
pub struct Proc {
    pub child: Child,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn first_line_url(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("process printed its address in time")
        .expect("read stdout")
        .expect("a first line");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_string()
}

fn stderr_target() -> Stdio {
    if std::env::var_os("MCPGATE_TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// The test MCP server in streamable HTTP mode; `url` ends in `/mcp`.
pub async fn test_server_http() -> Proc {
    let mut child = Command::new(TEST_SERVER)
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(stderr_target())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn test server");
    let url = first_line_url(&mut child, "listening on").await;
    Proc {
        child,
        url,
        _dir: None,
    }
}

/// A streamable HTTP server on the official Python SDK 2.3 that speaks only
/// MCP 2026-07-28 (tests/interop/modern_server.py; `scripts/py-modern`
/// installs its venv).
pub async fn modern_server() -> Proc {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py-modern/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run scripts/py-modern (the tests' 2026-07-28 backend needs it)"
    );
    let mut child = Command::new(python)
        .args([
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/modern_server.py"
            ),
            "0",
            "--modern-only",
        ])
        .stdout(Stdio::piped())
        .stderr(stderr_target())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the Python 2026-07-28 server");
    let url = first_line_url(&mut child, "listening on").await;
    Proc {
        child,
        url,
        _dir: None,
    }
}

/// A stdio service running the test server.
pub fn stdio_service() -> Value {
    json!({ "command": TEST_SERVER })
}

/// Start the gateway with `config` (the `proxy.addr` is forced to a free port).
pub async fn gateway(config: Value) -> Proc {
    gateway_with_env(config, &[]).await
}

pub async fn gateway_with_env(config: Value, env: &[(&str, &str)]) -> Proc {
    gateway_at(config, env, "127.0.0.1:0").await
}

/// Run the `mcpgate` binary with `args`; its output.
pub fn cli<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    std::process::Command::new(GATEWAY)
        .args(args)
        .output()
        .expect("run mcpgate")
}

/// Run the `mcpgate` binary, which must succeed; its stdout.
pub fn cli_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = cli(args);
    assert!(
        out.status.success(),
        "mcpgate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (for a gateway that must keep its address across a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The gateway with JSON logs written to a file (returned), for tests that read them.
pub async fn gateway_logged(config: Value) -> (Proc, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("mcpgate.json");
    let log = dir.path().join("mcpgate.log");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
    let mut child = Command::new(GATEWAY)
        .args([
            "serve",
            "--log-format",
            "json",
            "--addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gateway");
    let url = first_line_url(&mut child, "mcpgate listening on").await;
    (
        Proc {
            child,
            url,
            _dir: Some(dir),
        },
        log,
    )
}

pub async fn gateway_at(config: Value, env: &[(&str, &str)], addr: &str) -> Proc {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("mcpgate.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
    let mut child = Command::new(GATEWAY)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--addr", addr])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr_target())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gateway");
    let url = first_line_url(&mut child, "mcpgate listening on").await;
    Proc {
        child,
        url,
        _dir: Some(dir),
    }
}

/// GET a URL and read its JSON body (panics with the URL on failure).
pub async fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Read every JSON-RPC message of an answer, JSON or SSE.
pub async fn messages(resp: reqwest::Response) -> Vec<Value> {
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ct.starts_with("text/event-stream") {
        let mut out = Vec::new();
        let mut events = resp.bytes_stream().eventsource();
        while let Some(Ok(ev)) = events.next().await {
            if ev.data.trim().is_empty() {
                continue;
            }
            out.push(serde_json::from_str(&ev.data).expect("event data is JSON"));
        }
        out
    } else {
        let body = resp.bytes().await.expect("body");
        if body.is_empty() {
            return Vec::new();
        }
        match serde_json::from_slice::<Value>(&body).expect("JSON body") {
            Value::Array(items) => items,
            v => vec![v],
        }
    }
}

/// A minimal streamable HTTP MCP client, written against the spec (not the
/// gateway's code), for tests that need to see the wire.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub version: String,
    /// `Authorization: Bearer` for gateways with `proxy.auth`.
    pub bearer: Option<String>,
    next_id: u64,
}

impl Mcp {
    pub fn new(url: impl Into<String>) -> Mcp {
        Mcp {
            http: http(),
            url: url.into(),
            session: None,
            version: "2025-11-25".into(),
            bearer: None,
            next_id: 0,
        }
    }

    pub fn with_bearer(mut self, token: &str) -> Mcp {
        self.bearer = Some(token.into());
        self
    }

    pub fn with_version(mut self, v: &str) -> Mcp {
        self.version = v.into();
        self
    }

    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", &self.version);
        }
        req
    }

    /// Another handle on the same session (for answering server requests
    /// while a request is in flight).
    pub fn same_session(&self) -> Mcp {
        Mcp {
            http: self.http.clone(),
            url: self.url.clone(),
            session: self.session.clone(),
            version: self.version.clone(),
            bearer: self.bearer.clone(),
            next_id: 1_000_000,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub async fn initialize(&mut self) -> Value {
        let id = self.next_id();
        let resp = self
            .post(&json!({
                "jsonrpc": "2.0", "id": id, "method": "initialize",
                "params": {
                    "protocolVersion": self.version,
                    "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                    "clientInfo": {"name": "mcpgate-tests", "version": "0"}
                }
            }))
            .send()
            .await
            .expect("initialize sent");
        assert_eq!(resp.status(), 200, "initialize status");
        self.session = Some(
            resp.headers()
                .get("mcp-session-id")
                .expect("Mcp-Session-Id on initialize")
                .to_str()
                .expect("ascii")
                .to_string(),
        );
        let msgs = messages(resp).await;
        let answer = msgs.last().cloned().expect("initialize answer");
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .expect("initialized sent");
        assert_eq!(resp.status(), 202);
        answer
    }

    /// Send a request; return every message of the answer (last is the response).
    pub async fn request(&mut self, method: &str, params: Value) -> Vec<Value> {
        let id = self.next_id();
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .expect("request sent");
        assert_eq!(resp.status(), 200, "status of {method}");
        messages(resp).await
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        let msgs = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        msgs.last().cloned().expect("an answer")
    }

    /// The HTTP status a `ping` on this session gets (404 once the session is gone).
    pub async fn ping_status(&self) -> reqwest::StatusCode {
        self.post(&json!({"jsonrpc": "2.0", "id": "ping", "method": "ping"}))
            .send()
            .await
            .expect("ping sent")
            .status()
    }

    pub async fn delete(&self) -> reqwest::StatusCode {
        let mut req = self.http.delete(&self.url);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.expect("delete sent").status()
    }
}

/// The text of the first content item of a tools/call result.
pub fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_string()
}

/// The gateway's `/ready` document.
pub async fn ready(base: &str) -> Value {
    http()
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready")
        .json()
        .await
        .expect("ready is JSON")
}

/// A process is gone: no /proc entry at all (a zombie still has one).
pub fn process_gone(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub fn process_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next().map(str::to_string)
}

pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
