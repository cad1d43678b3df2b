//! Per-user backends, end to end through the real binary: each person's values
//! and token reach their own backend process and nobody else's; tokens are set
//! at `/my/tokens` and kept encrypted; a session opened before the token was set
//! explains where to set it and then works without reconnecting; machine
//! clients (serviceAuths) beside OAuth; session limits per person; audit records.

mod common;

use std::time::Duration;

use base64::Engine;
use common::oauth::*;
use common::{Mcp, gateway_at, gateway_logged, text_of};
use serde_json::{Value, json};

const KEY_A: [u8; 32] = [7u8; 32];
const KEY_B: [u8; 32] = [9u8; 32];

fn b64(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Services: `notes` takes each person's token (into the env of their process),
/// and sees who they are in its arguments; `plain` takes nothing per user.
fn config(storage: &str, keys: &[[u8; 32]]) -> Value {
    let mut auth = local_auth(storage);
    auth["encryptionKey"] = json!(b64(&keys[0]));
    auth["previousEncryptionKeys"] = json!(keys[1..].iter().map(b64).collect::<Vec<_>>());
    json!({
        "proxy": {"auth": auth},
        "mcpServers": {
            "notes": {
                "command": common::TEST_SERVER,
                "args": ["--label", {"$user": "email"}],
                "env": {"NOTES_TOKEN": {"$userToken": "Bearer {{token}}"}, "WHO": {"$user": "email"}},
                "userAuthentication": {"type": "manual", "displayName": "Notes", "instructions": "Create a token in Notes settings.", "helpUrl": "https://notes.example/help", "validation": "^nt_"},
                "maxSessionsPerUser": 3,
                "serviceAuths": [
                    {"type": "bearer", "tokens": ["ci-token-0123456789abcdef"], "user": "ci@example.com", "userToken": "nt_ci"},
                    {"type": "basic", "username": "script", "password": "script-password-1", "userToken": "nt_script"}
                ]
            },
            "plain": common::stdio_service()
        }
    })
}

/// Sign in to the gateway's own pages in `browser` and return /my/tokens' HTML.
async fn my_tokens(browser: &mut Browser, base: &str, email: &str, password: &str) -> String {
    let resp = browser.get(&format!("{base}/my/tokens")).await;
    if resp.status() == 200 {
        return resp.text().await.unwrap();
    }
    let landed = sign_in_to_my_pages(browser, base, "/my/tokens", email, password).await;
    let page = browser.get(&landed).await;
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

async fn set_token(
    browser: &mut Browser,
    base: &str,
    html: &str,
    value: &str,
) -> reqwest::Response {
    browser
        .post(
            &format!("{base}/my/tokens/notes"),
            &[("csrf", &field(html, "csrf")), ("token", value)],
        )
        .await
}

/// With `mcp`'s GET stream open, Alice saves her Notes token at /my/tokens;
/// returns once the stream carried `notifications/tools/list_changed`.
async fn set_token_while_listening(mcp: &Mcp, base: &str, value: &str) {
    use futures_util::StreamExt;
    let mut get = mcp
        .http
        .get(&mcp.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", mcp.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(t) = &mcp.bearer {
        get = get.bearer_auth(t);
    }
    let resp = get.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut browser = Browser::default();
    let html = my_tokens(&mut browser, base, "alice@example.com", "pw-alice").await;
    set_token(&mut browser, base, &html, value).await;
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("notifications/tools/list_changed") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("list_changed in time");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
}

async fn start(storage: &str, keys: &[[u8; 32]]) -> (common::Proc, String) {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = config(storage, keys);
    c["proxy"]["baseURL"] = json!(format!("http://{addr}"));
    let gw = gateway_at(c, &[], &addr).await;
    let base = gw.url.clone();
    (gw, base)
}

#[tokio::test]
async fn each_person_gets_their_own_values_tokens_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let (_gw, base) = start(&format!("sqlite:{}", db.display()), &[KEY_A]).await;
    let notes = format!("{base}/notes/mcp");

    // Both set their token at /my/tokens.
    let mut alice_browser = Browser::default();
    let html = my_tokens(&mut alice_browser, &base, "alice@example.com", "pw-alice").await;
    assert!(
        html.contains("Notes")
            && html.contains("not set")
            && html.contains("https://notes.example/help"),
        "{html}"
    );
    // The validation pattern is applied.
    let resp = set_token(&mut alice_browser, &base, &html, "wrong-format").await;
    assert!(location(&resp).contains("error="), "{}", location(&resp));
    let html = alice_browser
        .get(&format!("{base}/my/tokens"))
        .await
        .text()
        .await
        .unwrap();
    let resp = set_token(
        &mut alice_browser,
        &base,
        &html,
        "nt_alice_secret_value_1234",
    )
    .await;
    assert_eq!(resp.status(), 302);
    let html = alice_browser
        .get(&format!("{base}/my/tokens"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("…1234") && !html.contains("nt_alice_secret"),
        "never shown back in full"
    );
    let mut bob_browser = Browser::default();
    let html = my_tokens(&mut bob_browser, &base, "bob@example.com", "pw-bob").await;
    set_token(&mut bob_browser, &base, &html, "nt_bob_secret_value_5678").await;

    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    let mut a = Mcp::new(notes.clone()).with_bearer(&alice.access);
    a.initialize().await;
    let mut b = Mcp::new(notes.clone()).with_bearer(&bob.access);
    b.initialize().await;
    assert_eq!(
        text_of(&a.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_alice_secret_value_1234"
    );
    assert_eq!(
        text_of(&b.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_bob_secret_value_5678"
    );
    assert_eq!(
        text_of(&a.call("env", json!({"name": "WHO"})).await),
        "alice@example.com"
    );
    assert_eq!(
        text_of(&b.call("env", json!({"name": "WHO"})).await),
        "bob@example.com"
    );
    let pa = text_of(&a.call("pid", json!({})).await);
    let pb = text_of(&b.call("pid", json!({})).await);
    assert_ne!(pa, pb, "one process each");
    // Bob cannot use Alice's session id.
    let mut stolen = Mcp::new(notes.clone()).with_bearer(&bob.access);
    stolen.session = a.session.clone();
    assert_eq!(stolen.ping_status().await, 404);

    // The store file never holds a token in clear.
    let raw = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("nt_alice_secret") && !text.contains("nt_bob_secret"));
}

#[tokio::test]
async fn a_session_without_a_token_explains_and_then_works_without_reconnecting() {
    let (_gw, base) = start("memory", &[KEY_A]).await;
    let notes = format!("{base}/notes/mcp");
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let mut mcp = Mcp::new(notes.clone()).with_bearer(&alice.access);
    let init = mcp.initialize().await;
    assert!(
        init["result"]["instructions"]
            .as_str()
            .unwrap()
            .contains("/my/tokens"),
        "{init}"
    );
    let tools = mcp.request("tools/list", json!({})).await;
    let listed = tools.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 1);
    let answer = mcp.call("token_required", json!({})).await;
    assert_eq!(answer["result"]["isError"], true);
    assert!(
        text_of(&answer).contains(&format!("{base}/my/tokens")),
        "{answer}"
    );

    // Listen for list_changed on the GET stream, then set the token.
    set_token_while_listening(&mcp, &base, "nt_later_value_0000").await;
    // Same session, now the real server.
    assert_eq!(
        text_of(&mcp.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_later_value_0000"
    );
    let tools = mcp.request("tools/list", json!({})).await;
    assert!(
        tools.last().unwrap()["result"]["tools"]
            .as_array()
            .unwrap()
            .len()
            > 5
    );
}

#[tokio::test]
async fn keys_rotate_without_losing_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let storage = format!("sqlite:{}", db.display());
    let (gw, base) = start(&storage, &[KEY_A]).await;
    let mut browser = Browser::default();
    let html = my_tokens(&mut browser, &base, "alice@example.com", "pw-alice").await;
    set_token(&mut browser, &base, &html, "nt_rotating_value_4242").await;
    drop(gw);
    // New key first, old key kept for reading; re-seal everything; then drop the old key.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("c.json");
    std::fs::write(&cfg, config(&storage, &[KEY_B, KEY_A]).to_string()).unwrap();
    let out = common::cli_ok([
        std::ffi::OsStr::new("rotate-keys"),
        std::ffi::OsStr::new("--config"),
        cfg.as_os_str(),
    ]);
    assert!(out.contains("re-encrypted 1"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_gw, base) = start(&storage, &[KEY_B]).await;
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let mut mcp = Mcp::new(format!("{base}/notes/mcp")).with_bearer(&alice.access);
    mcp.initialize().await;
    assert_eq!(
        text_of(&mcp.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_rotating_value_4242"
    );
}

#[tokio::test]
async fn machine_clients_work_beside_oauth() {
    let (_gw, base) = start("memory", &[KEY_A]).await;
    let notes = format!("{base}/notes/mcp");
    let mut ci = Mcp::new(notes.clone()).with_bearer("ci-token-0123456789abcdef");
    ci.initialize().await;
    assert_eq!(
        text_of(&ci.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_ci"
    );
    assert_eq!(
        text_of(&ci.call("env", json!({"name": "WHO"})).await),
        "ci@example.com"
    );
    // Basic auth.
    let basic = base64::engine::general_purpose::STANDARD.encode("script:script-password-1");
    let resp = common::http()
        .post(&notes)
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Wrong secrets: 401 like any missing token.
    assert_eq!(
        mcp_status(&notes, Some("ci-token-0123456789abcdeX"))
            .await
            .status(),
        401
    );
    let bad = base64::engine::general_purpose::STANDARD.encode("script:wrong-password");
    let resp = common::http()
        .post(&notes)
        .header("authorization", format!("Basic {bad}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Service auth of `notes` is not valid at `plain`.
    assert_eq!(
        mcp_status(
            &format!("{base}/plain/mcp"),
            Some("ci-token-0123456789abcdef")
        )
        .await
        .status(),
        401
    );
    // And OAuth still works on the same service.
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    assert_eq!(mcp_status(&notes, Some(&alice.access)).await.status(), 200);
}

#[tokio::test]
async fn sessions_per_person_are_limited() {
    let (_gw, base) = start("memory", &[KEY_A]).await;
    let notes = format!("{base}/notes/mcp");
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut m = Mcp::new(notes.clone()).with_bearer(&alice.access);
        m.initialize().await;
        open.push(m);
    }
    let resp = mcp_status(&notes, Some(&alice.access)).await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxSessionsPerUser"),
        "{body}"
    );
    // Someone else is not affected.
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    assert_eq!(mcp_status(&notes, Some(&bob.access)).await.status(), 200);
}

#[tokio::test]
async fn every_tool_call_leaves_an_audit_record() {
    let mut c = config("memory", &[KEY_A]);
    c["mcpServers"]["plain"]["auditArguments"] = json!(false);
    let (gw, log) = gateway_logged(c).await;
    let base = gw.url.clone();
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let mut mcp = Mcp::new(format!("{base}/plain/mcp")).with_bearer(&alice.access);
    mcp.initialize().await;
    mcp.call("echo", json!({"text": "private words"})).await;
    mcp.call("fail", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    let echo = &records[0];
    assert_eq!(echo["user"], "local:alice@example.com");
    assert_eq!(echo["service"], "plain");
    assert_eq!(echo["method"], "tools/call");
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["outcome"], "ok");
    assert!(echo["client_id"].as_str().unwrap().starts_with("mgc-"));
    assert!(echo["duration_ms"].is_number());
    assert_eq!(records[1]["name"], "fail");
    assert_eq!(records[1]["outcome"], "tool_error");
    assert!(
        !text.contains("private words"),
        "arguments are not logged unless enabled"
    );
}

#[tokio::test]
async fn a_shared_process_serves_one_persons_sessions_and_keeps_answers_apart() {
    let mut c = config("memory", &[KEY_A]);
    c["mcpServers"]["team"] = json!({"command": common::TEST_SERVER, "shared": true});
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    c["proxy"]["baseURL"] = json!(format!("http://{addr}"));
    let _gw = gateway_at(c, &[], &addr).await;
    let base = format!("http://{addr}");
    let team = format!("{base}/team/mcp");
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    let mut a1 = Mcp::new(team.clone()).with_bearer(&alice.access);
    a1.initialize().await;
    let mut a2 = Mcp::new(team.clone()).with_bearer(&alice.access);
    a2.initialize().await;
    let mut b1 = Mcp::new(team.clone()).with_bearer(&bob.access);
    b1.initialize().await;
    let pid_a1 = text_of(&a1.call("pid", json!({})).await);
    let pid_a2 = text_of(&a2.call("pid", json!({})).await);
    let pid_b1 = text_of(&b1.call("pid", json!({})).await);
    assert_eq!(pid_a1, pid_a2, "alice's sessions share one process");
    assert_ne!(pid_a1, pid_b1, "bob has his own");
    // Both of alice's sessions use the same request ids at once; each gets its own answer.
    for round in 0..5 {
        let (x, y) = tokio::join!(
            a1.call("echo", json!({"text": format!("one-{round}")})),
            a2.call("echo", json!({"text": format!("two-{round}")}))
        );
        assert_eq!(text_of(&x), format!("one-{round}"));
        assert_eq!(text_of(&y), format!("two-{round}"));
    }
    // Closing one session leaves the process to the other; the last one ends it.
    assert_eq!(a1.delete().await, 200);
    assert_eq!(
        text_of(&a2.call("echo", json!({"text": "still here"})).await),
        "still here"
    );
    assert_eq!(a2.delete().await, 200);
    let pid: i32 = pid_a1.parse().unwrap();
    common::wait_until(
        "the shared process ends with its last session",
        Duration::from_secs(10),
        || common::process_gone(pid),
    )
    .await;
    assert_eq!(
        text_of(&b1.call("echo", json!({"text": "bob"})).await),
        "bob"
    );
}

#[tokio::test]
async fn replacing_a_token_ends_sessions_running_with_the_old_one() {
    let (_gw, base) = start("memory", &[KEY_A]).await;
    let notes = format!("{base}/notes/mcp");
    let mut browser = Browser::default();
    let html = my_tokens(&mut browser, &base, "alice@example.com", "pw-alice").await;
    set_token(&mut browser, &base, &html, "nt_first_value_1111").await;
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let mut old = Mcp::new(notes.clone()).with_bearer(&alice.access);
    old.initialize().await;
    assert_eq!(
        text_of(&old.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_first_value_1111"
    );
    let html = browser
        .get(&format!("{base}/my/tokens"))
        .await
        .text()
        .await
        .unwrap();
    set_token(&mut browser, &base, &html, "nt_second_value_2222").await;
    let mut status = old.ping_status().await;
    for _ in 0..50 {
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = old.ping_status().await;
    }
    assert_eq!(status, 404, "the client is told to re-initialize");
    let mut new = Mcp::new(notes).with_bearer(&alice.access);
    new.initialize().await;
    assert_eq!(
        text_of(&new.call("env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_second_value_2222"
    );
}

/// On the aggregated endpoint, a service waiting for a person's token offers
/// `<service>_token_required`; once the token is saved the client is told the
/// tools changed, and the service works with that person's token, while
/// another person's view (cached per person) is unchanged.
#[tokio::test]
async fn the_aggregate_waits_for_each_persons_token_too() {
    let (_gw, base) = start("memory", &[KEY_A]).await;
    let all = format!("{base}/mcp");
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    let names = |msgs: Vec<Value>| -> Vec<String> {
        msgs.last().unwrap()["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut mcp = Mcp::new(all.clone()).with_bearer(&alice.access);
    mcp.initialize().await;
    let tools = names(mcp.request("tools/list", json!({})).await);
    assert!(
        tools.contains(&"notes_token_required".to_string()),
        "{tools:?}"
    );
    assert!(tools.contains(&"plain_echo".to_string()));
    let answer = mcp.call("notes_token_required", json!({})).await;
    assert!(text_of(&answer).contains("/my/tokens"), "{answer}");

    set_token_while_listening(&mcp, &base, "nt_alice_in_aggregate").await;
    let tools = names(mcp.request("tools/list", json!({})).await);
    assert!(tools.contains(&"notes_env".to_string()), "{tools:?}");
    assert_eq!(
        text_of(&mcp.call("notes_env", json!({"name": "NOTES_TOKEN"})).await),
        "Bearer nt_alice_in_aggregate"
    );

    let mut other = Mcp::new(all).with_bearer(&bob.access);
    other.initialize().await;
    let tools = names(other.request("tools/list", json!({})).await);
    assert!(
        tools.contains(&"notes_token_required".to_string()),
        "{tools:?}"
    );
}
