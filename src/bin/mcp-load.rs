//! mcp-load: a load generator for MCP servers over streamable HTTP.
//!
//! `mcp-load --url URL [--sessions 16] [--seconds 10] [--warmup 2] [--tool echo]
//! [--method tools/call]` opens the sessions, then every session calls the tool
//! (or sends the method, e.g. `tools/list`) in a loop; prints one JSON line
//! with rps and latency percentiles.
//!
//! `--stateless`: MCP 2026-07-28 instead, every request on its own (no
//! session; version and capabilities in each request's `_meta`).
//!
//! `mcp-load --url URL --open 1000` opens that many sessions, prints `ready`, and
//! keeps them open (idle) until stdin closes: for memory measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    url: String,
    sessions: usize,
    seconds: u64,
    warmup: u64,
    tool: String,
    method: String,
    open: Option<usize>,
    bearer: Option<String>,
    stateless: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        sessions: 16,
        seconds: 10,
        warmup: 2,
        tool: "echo".into(),
        method: "tools/call".into(),
        open: None,
        stateless: false,
        bearer: std::env::var("MCP_LOAD_BEARER")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stateless" {
            a.stateless = true;
            continue;
        }
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?,
            "--sessions" => a.sessions = val()?.parse().map_err(|e| format!("--sessions: {e}"))?,
            "--seconds" => a.seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => a.warmup = val()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--tool" => a.tool = val()?,
            "--method" => a.method = val()?,
            "--open" => a.open = Some(val()?.parse().map_err(|e| format!("--open: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(a)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: &Value,
) -> Result<(Option<String>, Value), String> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = sid {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    } else if let Some(method) = body.get("method").and_then(Value::as_str)
        && method != "initialize"
    {
        req = req
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(name) = body.pointer("/params/name").and_then(Value::as_str) {
            req = req.header("mcp-name", name);
        }
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let new_sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {text}"));
    }
    if text.is_empty() {
        return Ok((new_sid, Value::Null));
    }
    let body = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .rfind(|d| !d.trim().is_empty())
            .unwrap_or("null")
            .to_string()
    } else {
        text
    };
    let v = serde_json::from_str(&body).map_err(|e| format!("bad JSON: {e}"))?;
    Ok((new_sid, v))
}

const MODERN: &str = "2026-07-28";

async fn open_session(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-load", "version": "0"}}});
    let (sid, _) = post(client, url, None, &init).await?;
    let sid = sid.ok_or("no Mcp-Session-Id in the initialize answer")?;
    post(
        client,
        url,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    Ok(sid)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// This process's user+system CPU time so far (from /proc, in clock ticks of 10 ms).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat are utime and stime; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcp-load: {e}");
            std::process::exit(2);
        }
    };
    // MCP_LOAD_BEARER: an access token for gateways with proxy.auth (from the
    // environment, so it does not show in process listings).
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = &args.bearer {
        match reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")) {
            Ok(v) => {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            Err(_) => {
                eprintln!("mcp-load: MCP_LOAD_BEARER is not a valid header value");
                std::process::exit(2);
            }
        }
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .default_headers(headers)
        .build()
        .expect("http client");

    if let Some(n) = args.open {
        let mut opened = Vec::with_capacity(n);
        for _ in 0..n {
            match open_session(&client, &args.url).await {
                Ok(s) => opened.push(s),
                Err(e) => {
                    eprintln!("mcp-load: opening a session failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        println!("ready {}", opened.len());
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return;
    }

    let mut sids: Vec<Option<String>> = Vec::new();
    for _ in 0..args.sessions {
        if args.stateless {
            sids.push(None);
            continue;
        }
        match open_session(&client, &args.url).await {
            Ok(s) => sids.push(Some(s)),
            Err(e) => {
                eprintln!("mcp-load: opening a session failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let opened: Vec<String> = sids.iter().flatten().cloned().collect();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for sid in sids {
        let (client, url, tool) = (client.clone(), args.url.clone(), args.tool.clone());
        let method = args.method.clone();
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut id = 1u64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let mut body = if method == "tools/call" {
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": tool, "arguments": {"text": "hello"}}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
                };
                if sid.is_none() {
                    body["params"]["_meta"] = json!({
                        "io.modelcontextprotocol/protocolVersion": MODERN,
                        "io.modelcontextprotocol/clientCapabilities": {}});
                }
                let t = Instant::now();
                let r = post(&client, &url, sid.as_deref(), &body).await;
                let us = t.elapsed().as_micros() as u64;
                let ok = matches!(&r, Ok((_, v)) if v.get("result").is_some());
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(us);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        if let Ok(l) = w.await {
            all.extend(l);
        }
    }
    all.sort_unstable();
    let cpu_s = own_cpu_seconds();
    // End the sessions (and their backends), so runs that follow start clean.
    for sid in &opened {
        let _ = client
            .delete(&args.url)
            .header("mcp-session-id", sid.as_str())
            .send()
            .await;
    }
    println!(
        "{}",
        json!({
            "sessions": args.sessions,
            "seconds": elapsed,
            "requests": all.len(),
            "errors": errors.load(Ordering::Relaxed),
            "rps": all.len() as f64 / elapsed,
            "p50_ms": percentile(&all, 0.50),
            "p99_ms": percentile(&all, 0.99),
            "loadgen_cpu_s": cpu_s,
        })
    );
}
