//! mcp-test-server: a small, fast MCP server for mcpgate's tests, the public
//! conformance suite and the benchmarks. It is written directly on JSON (not on
//! the gateway's code) so that it checks the gateway rather than agreeing with it.
//!
//! `mcp-test-server` speaks stdio; `mcp-test-server --http 127.0.0.1:0` speaks
//! streamable HTTP at `/mcp` and prints `listening on http://ADDR/mcp`.

mod conformance;
mod http;
mod rounds;
mod tools;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

pub const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Server-to-client requests waiting for their answer, per session.
#[derive(Default)]
pub struct Session {
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next_id: AtomicU64,
    pub log_level: Mutex<Option<String>>,
    pub subscriptions: Mutex<Vec<String>>,
    /// HTTP mode: answers kept for streams the server closed early (SEP-1699),
    /// by the event id the client will resume from.
    pub replay: Mutex<HashMap<String, Value>>,
    pub replayed: tokio::sync::Notify,
    /// Where messages that belong to no request go: stdout in stdio mode, the
    /// GET stream (when open) in HTTP mode.
    pub listener: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// What the client declared at initialize.
    pub capabilities: Mutex<Value>,
}

impl Session {
    pub fn client_capabilities(&self) -> Value {
        self.capabilities
            .lock()
            .map(|c| c.clone())
            .unwrap_or(Value::Null)
    }

    /// Route a client's response to the server request waiting for it.
    pub fn on_response(&self, msg: &Value) -> bool {
        let Some(id) = msg.get("id").map(Value::to_string) else {
            return false;
        };
        let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(msg.clone());
                true
            }
            None => false,
        }
    }
}

/// What a handler may do besides answering: notify, and ask the client.
#[derive(Clone)]
pub struct Ctx {
    pub out: mpsc::UnboundedSender<Value>,
    pub session: Arc<Session>,
    /// HTTP mode: the request's headers (for tests of what a gateway forwards).
    pub headers: Option<Value>,
}

impl Ctx {
    pub fn notify(&self, method: &str, params: Value) {
        let _ = self
            .out
            .send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    pub async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        self.request_as(None, method, params).await
    }

    /// A request under an id of the tool's choosing (when no request of the
    /// session's waits under it): a 2026-07-28 gateway shows it to its client
    /// as the input request's key.
    pub async fn request_as(
        &self,
        name: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let n = self.session.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut id = json!(format!("srv-{n}"));
        if let Ok(mut p) = self.session.pending.lock() {
            if let Some(name) = name
                && !p.contains_key(&json!(name).to_string())
            {
                id = json!(name);
            }
            p.insert(id.to_string(), tx);
        }
        let _ = self
            .out
            .send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let reply = rx.await.map_err(|_| "the client went away".to_string())?;
        match (reply.get("result"), reply.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (_, Some(e)) => Err(format!("client error: {e}")),
            _ => Err("malformed reply".into()),
        }
    }

    /// Ask the client to sample `prompt`; the text it answers.
    pub async fn sample(&self, prompt: &str) -> Result<String, (i64, String)> {
        let r = self
            .request(
                "sampling/createMessage",
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100}),
            )
            .await
            .map_err(|e| (-32603, e))?;
        Ok(r.pointer("/content/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string())
    }
}

fn ok(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn err(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Handle one client message; `Some(answer)` for requests.
pub async fn handle(msg: Value, ctx: Ctx) -> Option<Value> {
    let method = msg.get("method").and_then(Value::as_str)?.to_string();
    let id = msg.get("id").cloned()?;
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let result = match method.as_str() {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(VERSIONS[0]);
            if let Ok(mut c) = ctx.session.capabilities.lock() {
                *c = params.get("capabilities").cloned().unwrap_or(Value::Null);
            }
            let version = if VERSIONS.contains(&asked) {
                asked
            } else {
                VERSIONS[0]
            };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {
                    "tools": {"listChanged": true},
                    "resources": {"subscribe": true, "listChanged": true},
                    "prompts": {"listChanged": true},
                    "logging": {},
                    "completions": {},
                    "experimental": {"mcpgate-test": {"unknownField": [1, 2, 3]}}
                },
                "serverInfo": {"name": "mcp-test-server", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "A test server: echo, sleep, fail, crash, progress, sampling, elicitation."
            }))
        }
        "ping" => Ok(json!({})),
        "logging/setLevel" => {
            if let Ok(mut l) = ctx.session.log_level.lock() {
                *l = params
                    .get("level")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            Ok(json!({}))
        }
        "tools/list" => Ok(json!({"tools": tools::list()})),
        "tools/call" => tools::call(&params, &ctx).await,
        "resources/list" => Ok(tools::resources()),
        "resources/templates/list" => Ok(tools::resource_templates()),
        "resources/read" => tools::read_resource(&params),
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Ok(mut subs) = ctx.session.subscriptions.lock() {
                if method == "resources/subscribe" {
                    subs.push(uri);
                } else {
                    subs.retain(|u| *u != uri);
                }
            }
            Ok(json!({}))
        }
        "prompts/list" => Ok(tools::prompts()),
        "prompts/get" => tools::get_prompt(&params, &ctx).await,
        "completion/complete" => Ok(tools::complete(&params)),
        _ => Err((-32601, format!("Method not found: {method}"))),
    };
    Some(match result {
        Ok(r) => ok(&id, r),
        Err((code, message)) => err(&id, code, &message),
    })
}

/// stdin as an epoll-driven pipe when it is one (as under a gateway): tokio's
/// generic stdin goes through a blocking thread for every read, which costs more
/// than everything else this server does.
fn stdin_reader() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdin()),
    }
}

fn stdout_writer() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdout()),
    }
}

async fn stdio() {
    let session = Arc::new(Session::default());
    let (out, mut rx) = mpsc::unbounded_channel::<Value>();
    if let Ok(mut l) = session.listener.lock() {
        *l = Some(out.clone());
    }
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::new(stdout_writer());
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(v) = next {
                let mut line = v.to_string();
                line.push('\n');
                if w.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
                next = rx.try_recv().ok();
            }
            if w.flush().await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(stdin_reader()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            let _ = out.send(err(&Value::Null, -32700, "Parse error"));
            continue;
        };
        if msg.get("method").is_none() {
            session.on_response(&msg);
            continue;
        }
        let ctx = Ctx {
            out: out.clone(),
            session: session.clone(),
            headers: None,
        };
        let out = out.clone();
        tokio::spawn(async move {
            if let Some(answer) = handle(msg, ctx).await {
                let _ = out.send(answer);
            }
        });
    }
    // stdin closed: the client (the gateway) is gone. A well-behaved stdio
    // server exits now, whatever its tools are still doing, after a moment
    // for answers already written to reach the pipe.
    drop(out);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), writer).await;
    if IGNORE_EOF.load(std::sync::atomic::Ordering::Relaxed) {
        // The `ignore_eof` tool: behave like a server that never notices.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
    std::process::exit(0);
}

/// Set by the `ignore_eof` tool.
pub static IGNORE_EOF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--http") {
        Some(i) => {
            let addr = args
                .get(i + 1)
                .cloned()
                .unwrap_or_else(|| "127.0.0.1:0".into());
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(http::serve(&addr));
        }
        None => {
            // One process per session: a single thread is plenty and cheapest.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(stdio());
        }
    }
}
