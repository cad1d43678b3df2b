//! `mcpgate connect` end to end: the real binary as a child process, spoken to on
//! stdio, against `mcpgate serve` with the local identity provider (sign-in on
//! the real pages, driven headlessly through `$BROWSER`), and against a small
//! scripted authorization server for the failures a real one rarely shows.

#[path = "common/connect_bridge.rs"]
mod bridge;
mod common;
#[path = "common/connect_fake.rs"]
mod fake;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bridge::{Bridge, Home, text};
use common::oauth::{config_with, local_auth, no_redirects};
use serde_json::{Value, json};

/// A gateway with the local provider, services `a` and `b`, and this token lifetime.
async fn gateway(token_ttl: &str) -> common::Proc {
    let mut auth = local_auth("memory");
    auth["tokenTtl"] = json!(token_ttl);
    common::gateway(config_with(auth)).await
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn signs_in_calls_tools_and_ends_the_session() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let browser = home.gateway_browser(0.0);
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(&home, &browser, &url, &["--protocol", "session"]).await;

    let init = b.initialize().await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-test-server",
        "{init}"
    );
    let tools = b.request("tools/list", json!({})).await;
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo")),
        "{tools}"
    );
    assert_eq!(
        text(&b.echo("through the bridge").await),
        "through the bridge"
    );
    assert_eq!(home.browser_opened(), 1);

    // Concurrent requests: answers come back by id, whatever their order.
    let (id1, id2) = (b.id(), b.id());
    b.send(&json!({"jsonrpc": "2.0", "id": id1, "method": "tools/call", "params": {"name": "sleep", "arguments": {"ms": 600}}})).await;
    b.send(&json!({"jsonrpc": "2.0", "id": id2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "fast"}}})).await;
    let first = b.recv().await;
    assert_eq!(
        first["id"],
        json!(id2),
        "the fast answer is not held behind the slow one"
    );
    assert_eq!(b.response(id1).await["id"], json!(id1));

    let stderr = b.stderr();
    assert!(
        stderr.contains("/authorize?"),
        "the sign-in URL is printed: {stderr}"
    );
    assert_eq!(common::ready(&gw.url).await["services"]["a"]["sessions"], 1);

    let (status, stderr) = b.finish().await;
    assert!(status.success(), "exit status {status}; {stderr}");
    let ready = common::ready(&gw.url).await;
    assert_eq!(
        ready["services"]["a"]["sessions"], 0,
        "DELETE on exit: {ready}"
    );

    // The cache: private directory, private file, no token in stderr.
    let cached = home.cached();
    let access = cached["tokens"]["access_token"]
        .as_str()
        .expect("cached access token");
    let refresh = cached["tokens"]["refresh_token"]
        .as_str()
        .expect("cached refresh token");
    assert!(
        !stderr.contains(access) && !stderr.contains(refresh),
        "no tokens in logs"
    );
    assert_eq!(mode(&home.cache_dir()), 0o700);
    assert_eq!(mode(&home.cache_files()[0]), 0o600);
}

#[tokio::test]
async fn a_second_run_reuses_the_cached_tokens_without_a_browser() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let trace = home.path().join("trace.jsonl");
    let trace_arg = trace.to_string_lossy().into_owned();
    let mut b = Bridge::start(
        &home,
        &home.gateway_browser(0.0),
        &url,
        &["--trace-file", &trace_arg],
    )
    .await;
    assert!(b.initialize().await.get("result").is_some());
    b.finish().await;
    assert_eq!(home.browser_opened(), 1);
    // --trace-file: one span per HTTP exchange, private, without tokens or codes.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let spans: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON span"))
        .collect();
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    for expected in [
        "oauth.discovery",
        "oauth.register",
        "oauth.token",
        "mcp.post",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let raw = std::fs::read_to_string(&trace).unwrap();
    let cached = home.cached();
    for secret in ["access_token", "refresh_token"] {
        if let Some(t) = cached["tokens"][secret].as_str() {
            assert!(!raw.contains(t), "no {secret} in the trace");
        }
    }
    assert!(
        !raw.contains("code=") && !raw.contains("state="),
        "no query strings"
    );

    let mut b = Bridge::start(&home, &home.no_browser(), &url, &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(text(&b.echo("again").await), "again");
    let (status, stderr) = b.finish().await;
    assert!(status.success());
    assert_eq!(home.browser_opened(), 1, "no second sign-in: {stderr}");

    // `mcpgate auth list` shows the sign-in; `auth logout` forgets it.
    let auth = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgate"))
            .arg("auth")
            .args(args)
            .arg("--cache-dir")
            .arg(home.cache_dir())
            .output()
            .expect("mcpgate auth");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = auth(&["list"]);
    assert!(
        listed.contains(&url) && listed.contains("access token valid"),
        "{listed}"
    );
    assert!(
        !listed.contains(home.cached()["tokens"]["access_token"].as_str().unwrap()),
        "no token printed"
    );
    assert!(auth(&["logout", &url]).contains("signed out"));
    assert!(auth(&["list"]).contains("no cached sign-ins"));
    let mut b = Bridge::start(&home, &home.gateway_browser(0.0), &url, &[]).await;
    assert!(b.initialize().await.get("result").is_some());
    b.finish().await;
    assert_eq!(home.browser_opened(), 2, "signed in again after logout");
}

#[tokio::test]
async fn expired_tokens_are_refreshed_without_a_browser() {
    let gw = gateway("2s").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(&home, &home.gateway_browser(0.0), &url, &[]).await;
    assert!(b.initialize().await.get("result").is_some());
    let before = home.cached()["tokens"]["access_token"].clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(text(&b.echo("after expiry").await), "after expiry");
    let after = home.cached()["tokens"]["access_token"].clone();
    assert_ne!(before, after, "a new access token was obtained");
    assert_eq!(home.browser_opened(), 1, "refreshed, not signed in again");
    b.finish().await;

    // A later run starts with an expired token and a valid refresh token.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut b = Bridge::start(&home, &home.no_browser(), &url, &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(text(&b.echo("next day").await), "next day");
    b.finish().await;
    assert_eq!(home.browser_opened(), 1);
}

#[tokio::test]
async fn a_revoked_token_leads_to_exactly_one_new_sign_in() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(&home, &home.gateway_browser(0.0), &url, &[]).await;
    assert!(b.initialize().await.get("result").is_some());
    let cached = home.cached();
    let resp = no_redirects()
        .post(format!("{}/revoke", gw.url))
        .form(&[
            (
                "token",
                cached["tokens"]["refresh_token"].as_str().expect("refresh"),
            ),
            (
                "client_id",
                cached["client"]["client_id"].as_str().expect("client"),
            ),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);

    assert_eq!(text(&b.echo("after revocation").await), "after revocation");
    assert_eq!(home.browser_opened(), 2, "one new sign-in: {}", b.stderr());
    assert_eq!(text(&b.echo("and then").await), "and then");
    assert_eq!(home.browser_opened(), 2);
    b.finish().await;
}

#[tokio::test]
async fn no_browser_prints_the_url_and_takes_the_callback_from_anywhere() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b =
        Bridge::start_without_terminal(&home, &home.no_browser(), &url, &["--no-browser"]).await;
    let id = b.id();
    b.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "connect-tests", "version": "0"}}}),
    )
    .await;
    // The person copies the URL from the terminal into a browser elsewhere.
    let mut authorize = None;
    for _ in 0..200 {
        authorize = b
            .stderr()
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http") && l.contains("/authorize?"))
            .map(str::to_string);
        if authorize.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let authorize = authorize.unwrap_or_else(|| panic!("no sign-in URL on stderr: {}", b.stderr()));
    let login = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/oauth-login");
    let out = tokio::process::Command::new("python3")
        .args([login, "browse", &authorize, "alice@example.com", "pw-alice"])
        .output()
        .await
        .expect("run oauth-login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        b.response(id).await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(home.browser_opened(), 0, "no browser was started");
    b.finish().await;
}

#[tokio::test]
async fn a_busy_callback_port_is_reported_before_any_browser_opens() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(
        &home,
        &home.gateway_browser(0.0),
        &url,
        &["--callback-port", &port],
    )
    .await;
    let answer = b.initialize().await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&port) && message.contains("already in use"),
        "{answer}"
    );
    assert_eq!(
        home.browser_opened(),
        0,
        "no browser tab for a sign-in that cannot finish"
    );
    let (status, _) = b.finish().await;
    assert!(status.success());

    // Once the port is free, the same command signs in.
    drop(taken);
    let mut b = Bridge::start(
        &home,
        &home.gateway_browser(0.0),
        &url,
        &["--callback-port", &port],
    )
    .await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    b.finish().await;
}

#[tokio::test]
async fn two_bridges_for_one_server_share_one_sign_in() {
    let gw = gateway("1h").await;
    let home = Home::new();
    // A slow person at the browser: the second bridge arrives mid-sign-in.
    let browser = home.gateway_browser(1.5);
    let url = format!("{}/a/mcp", gw.url);
    let mut one = Bridge::start(&home, &browser, &url, &[]).await;
    let mut two = Bridge::start(&home, &browser, &url, &[]).await;
    let (a, b) = tokio::join!(one.initialize(), two.initialize());
    assert!(a.get("result").is_some(), "{a}");
    assert!(b.get("result").is_some(), "{b}");
    assert_eq!(text(&one.echo("one").await), "one");
    assert_eq!(text(&two.echo("two").await), "two");
    assert_eq!(home.browser_opened(), 1, "one sign-in for both");
    let (_, err1) = one.finish().await;
    let (_, err2) = two.finish().await;
    assert!(
        format!("{err1}{err2}").contains("waiting for it"),
        "one waited for the other's sign-in:\n{err1}\n{err2}"
    );
}

#[tokio::test]
async fn stdout_carries_only_protocol_and_bad_lines_get_errors() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(&home, &home.gateway_browser(0.0), &url, &[]).await;
    b.send(&json!("not a message")).await;
    let err = b.recv().await;
    assert_eq!(err["error"]["code"], -32600, "{err}");
    assert!(b.initialize().await.get("result").is_some());
    b.finish().await;
}

#[tokio::test]
async fn the_session_is_re_initialized_when_the_server_forgets_it() {
    // Without auth: the gateway on loopback; restart it on the same port so the
    // session id the bridge holds becomes unknown.
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = json!({"mcpServers": {"a": common::stdio_service()}});
    let gw = common::gateway_at(config.clone(), &[], &addr).await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(&home, &home.no_browser(), &url, &[]).await;
    assert!(b.initialize().await.get("result").is_some());
    assert_eq!(text(&b.echo("before").await), "before");
    drop(gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gw = common::gateway_at(config, &[], &addr).await;
    assert_eq!(
        text(&b.echo("after restart").await),
        "after restart",
        "{}",
        b.stderr()
    );
    assert_eq!(common::ready(&gw.url).await["services"]["a"]["sessions"], 1);
    assert_eq!(home.browser_opened(), 0);
    b.finish().await;
}

/// The server's question mid-call reaches the stdio client and its answer
/// goes back: in a session (`--protocol session`), and in 2026-07-28, where the
/// gateway answers `input_required` and the bridge asks the client, then retries.
#[tokio::test]
async fn server_requests_reach_the_client_and_its_answers_go_back() {
    for protocol in ["session", "auto"] {
        server_request_round_trip(protocol).await;
    }
}

async fn server_request_round_trip(protocol: &str) {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(
        &home,
        &home.gateway_browser(0.0),
        &url,
        &["--protocol", protocol],
    )
    .await;
    let init = b
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                   "clientInfo": {"name": "connect-tests", "version": "0"}}),
        )
        .await;
    assert!(init.get("result").is_some(), "{init}");
    b.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let id = b.id();
    b.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "sample", "arguments": {"prompt": "hi"}}})).await;
    let ask = b.recv().await;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "from the client"}, "model": "m"}})).await;
    let answer = b.response(id).await;
    assert_eq!(text(&answer), "sampled: from the client");
    // Read after the round trip: stderr is collected as the bridge writes it.
    assert_eq!(
        b.stderr().contains("speaks MCP 2026-07-28"),
        protocol == "auto",
        "auto finds that the gateway speaks 2026-07-28: {}",
        b.stderr()
    );
    b.finish().await;
}

#[tokio::test]
async fn sigterm_ends_the_bridge_cleanly_and_deletes_the_session() {
    let gw = gateway("1h").await;
    let home = Home::new();
    let url = format!("{}/a/mcp", gw.url);
    let mut b = Bridge::start(
        &home,
        &home.gateway_browser(0.0),
        &url,
        &["--protocol", "session"],
    )
    .await;
    assert!(b.initialize().await.get("result").is_some());
    assert_eq!(common::ready(&gw.url).await["services"]["a"]["sessions"], 1);
    let pid = nix::unistd::Pid::from_raw(b.child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), b.child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}: {}", b.stderr());
    assert_eq!(common::ready(&gw.url).await["services"]["a"]["sessions"], 0);
}

#[tokio::test]
async fn extra_headers_are_sent_with_values_from_the_environment() {
    let f = fake::start(fake::Script {
        api_key: Some("k-123".into()),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(
        &home,
        &home.redirect_browser(),
        &f.mcp_url(),
        &["--header", "X-Api-Key: env:CONNECT_TEST_API_KEY"],
    )
    .await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(text(&b.echo("x").await), "ok");
    b.finish().await;
}

#[tokio::test]
async fn an_authorization_header_replaces_sign_in() {
    let f = fake::start(fake::Script::default()).await;
    let home = Home::new();
    let mut b = Bridge::start(
        &home,
        &home.redirect_browser(),
        &f.mcp_url(),
        &["--header", "Authorization: Bearer not-a-token"],
    )
    .await;
    let answer = b.initialize().await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--header"), "{answer}");
    assert!(
        !message.contains("not-a-token"),
        "the header value is not echoed"
    );
    assert_eq!(home.browser_opened(), 0, "no sign-in");
    b.finish().await;
}

#[tokio::test]
async fn plain_http_elsewhere_is_refused_and_unset_variables_are_named() {
    let home = Home::new();
    let b = Bridge::start(&home, &home.no_browser(), "http://example.com/mcp", &[]).await;
    let (status, stderr) = b.finish().await;
    assert!(!status.success());
    assert!(stderr.contains("--allow-http"), "{stderr}");

    let b = Bridge::start(
        &home,
        &home.no_browser(),
        "http://127.0.0.1:9/mcp",
        &["--header", "X-Api-Key: env:CONNECT_TEST_UNSET_VAR"],
    )
    .await;
    let (status, stderr) = b.finish().await;
    assert!(!status.success());
    assert!(stderr.contains("CONNECT_TEST_UNSET_VAR"), "{stderr}");
}

#[tokio::test]
async fn legacy_sse_servers_are_reached_by_fallback() {
    // The gateway's /sse endpoint is a legacy server; --transport sse forces it,
    // and auto falls back when POST is refused.
    let config = json!({"mcpServers": {"a": common::stdio_service()}});
    let gw = common::gateway(config).await;
    let home = Home::new();
    for (url, args) in [
        (format!("{}/a/sse", gw.url), vec!["--transport", "sse"]),
        (format!("{}/a/sse", gw.url), vec![]),
    ] {
        let mut b = Bridge::start(&home, &home.no_browser(), &url, &args).await;
        let init = b.initialize().await;
        assert!(init.get("result").is_some(), "{init} {}", b.stderr());
        assert_eq!(text(&b.echo("legacy").await), "legacy");
        let (status, stderr) = b.finish().await;
        assert!(status.success(), "{stderr}");
    }
}

// ---- against a scripted authorization server ----

#[tokio::test]
async fn a_failed_refresh_signs_in_once_more() {
    let f = fake::start(fake::Script {
        first_token_ttl: Some(1),
        refresh: fake::Refresh::InvalidGrant,
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(text(&b.echo("x").await), "ok");
    assert_eq!(f.count("refresh"), 1, "one refresh attempt");
    assert_eq!(home.browser_opened(), 2, "then one sign-in: {}", b.stderr());
    assert_eq!(text(&b.echo("y").await), "ok");
    assert_eq!(home.browser_opened(), 2);
    b.finish().await;
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_the_request() {
    let f = fake::start(fake::Script::default()).await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    f.expire_access_tokens();
    assert_eq!(text(&b.echo("x").await), "ok", "{}", b.stderr());
    assert_eq!(f.count("refresh"), 1);
    assert_eq!(home.browser_opened(), 1, "no new sign-in");
    b.finish().await;
}

#[tokio::test]
async fn a_forgotten_client_is_registered_again_once() {
    let f = fake::start(fake::Script {
        first_token_ttl: Some(1),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(f.count("register"), 1);
    f.forget_clients();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(text(&b.echo("x").await), "ok", "{}", b.stderr());
    assert_eq!(f.count("register"), 2, "registered again, once");
    assert_eq!(home.browser_opened(), 2);
    b.finish().await;
}

#[tokio::test]
async fn headless_sign_in_uses_the_device_grant_when_offered() {
    let f = fake::start(fake::Script {
        device: true,
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b =
        Bridge::start_without_terminal(&home, &home.no_browser(), &f.mcp_url(), &["--no-browser"])
            .await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(text(&b.echo("x").await), "ok");
    assert!(
        b.stderr().contains("WDJB-MJHT"),
        "the user code is shown: {}",
        b.stderr()
    );
    assert_eq!(f.count("device"), 1);
    assert_eq!(f.count("device_poll"), 2, "polled until approved");
    assert_eq!(f.count("authorize"), 0);
    assert_eq!(home.browser_opened(), 0);
    b.finish().await;
}

#[tokio::test]
async fn a_server_without_s256_is_refused() {
    let f = fake::start(fake::Script {
        no_s256: true,
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    let answer = b.initialize().await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("S256"),
        "{answer}"
    );
    assert_eq!(home.browser_opened(), 0);
    assert_eq!(f.count("register"), 0);
    b.finish().await;
}

#[tokio::test]
async fn a_server_that_refuses_every_token_causes_no_sign_in_loop() {
    let f = fake::start(fake::Script {
        refuse_all_tokens: true,
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    let answer = b.initialize().await;
    assert!(answer.get("error").is_some(), "{answer}");
    assert_eq!(
        home.browser_opened(),
        1,
        "one sign-in, then an error: {}",
        b.stderr()
    );
    let (status, _) = b.finish().await;
    assert!(status.success());
}

#[tokio::test]
async fn insufficient_scope_steps_up_with_the_union_of_scopes() {
    let f = fake::start(fake::Script {
        tool_scope: Some("write".into()),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let mut b = Bridge::start(&home, &home.redirect_browser(), &f.mcp_url(), &[]).await;
    assert!(
        b.initialize().await.get("result").is_some(),
        "{}",
        b.stderr()
    );
    assert_eq!(text(&b.echo("x").await), "ok", "{}", b.stderr());
    let scopes: Vec<Value> = f.authorize_scopes();
    assert_eq!(scopes, vec![json!("read"), json!("read write")]);
    b.finish().await;
}

/// Against a server that speaks only MCP 2026-07-28 (the official Python SDK
/// 2.3): the stdio client initializes as usual, the server's input round
/// comes to it as an elicitation request, and its answer completes the call.
#[tokio::test]
async fn a_session_era_stdio_client_reaches_a_2026_server() {
    let server = common::modern_server().await;
    let home = Home::new();
    let mut b = Bridge::start(
        &home,
        &home.no_browser(),
        &server.url,
        &["--protocol", "2026-07-28"],
    )
    .await;
    let init = b
        .request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
                   "clientInfo": {"name": "connect-tests", "version": "0"}}),
        )
        .await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "modern-test-server",
        "{init}"
    );
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "the client's version, kept"
    );
    b.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(text(&b.echo("to 2026").await), "to 2026");
    let id = b.id();
    b.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "greet", "arguments": {}}}))
        .await;
    let ask = b.recv().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"name": "Cleo"}}}))
        .await;
    assert_eq!(text(&b.response(id).await), "Hello, Cleo!");
    b.finish().await;
}

/// `--protocol 2026-07-28` against a session-era server stops with a message
/// that says so, instead of falling back.
#[tokio::test]
async fn protocol_2026_refuses_a_session_era_server() {
    let server = common::test_server_http().await;
    let home = Home::new();
    let mut b = Bridge::start(
        &home,
        &home.no_browser(),
        &server.url,
        &["--protocol", "2026-07-28"],
    )
    .await;
    let init = b.initialize().await;
    let message = init["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("does not speak MCP 2026-07-28"), "{init}");
    b.finish().await;
}
