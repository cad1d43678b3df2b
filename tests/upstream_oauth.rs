//! "Connect with Linear" at `/my/tokens`, through the real binary over HTTP,
//! against an in-process fake of the service's OAuth provider: the code flow with
//! PKCE, tokens sealed at rest, refresh before expiry when a session starts
//! (rotating the refresh token), a clear error when refresh fails, Disconnect,
//! and the refusals (no CSRF, someone else's or a replayed `state`).

mod common;
#[path = "common/fake_upstream.rs"]
mod fake_upstream;

use base64::Engine;
use common::oauth::{
    Browser, field, local_auth, location, query_param, sign_in_to_my_pages, tokens_for,
};
use common::{Mcp, Proc, TEST_SERVER, gateway, text_of};
use fake_upstream::FakeUpstream;
use serde_json::json;

struct Setup {
    gw: Proc,
    fake: FakeUpstream,
    /// Holds the SQLite store.
    dir: tempfile::TempDir,
}

impl Setup {
    fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("mcpgate.db")
    }
}

async fn setup() -> Setup {
    let fake = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut auth = local_auth(&format!(
        "sqlite:{}",
        dir.path().join("mcpgate.db").display()
    ));
    auth["encryptionKey"] = json!(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let config = json!({
        "proxy": {"auth": auth},
        "mcpServers": {"linear": {
            "command": TEST_SERVER,
            "env": {"LINEAR_TOKEN": {"$userToken": "{{token}}"}},
            "userAuthentication": {
                "type": "oauth",
                "displayName": "Linear",
                "clientId": FakeUpstream::CLIENT_ID,
                "clientSecret": FakeUpstream::CLIENT_SECRET,
                "authorizationUrl": format!("{}/authorize", fake.base()),
                "tokenUrl": format!("{}/token", fake.base()),
                "scopes": ["read", "write"]
            }
        }}
    });
    let gw = gateway(config).await;
    Setup { gw, fake, dir }
}

/// Sign in to the gateway's own pages with the local form.
async fn sign_in(browser: &mut Browser, base: &str, email: &str, password: &str) {
    let landed = sign_in_to_my_pages(browser, base, "/my/tokens", email, password).await;
    assert!(
        landed.ends_with("/my/tokens"),
        "back at /my/tokens: {landed}"
    );
}

async fn tokens_page(browser: &mut Browser, base: &str) -> String {
    let page = browser.get(&format!("{base}/my/tokens")).await;
    assert_eq!(page.status(), 200);
    page.text().await.expect("tokens page")
}

/// Press Connect; return the provider's redirect back to the gateway (not yet followed).
async fn start_connect(browser: &mut Browser, base: &str) -> String {
    let html = tokens_page(browser, base).await;
    assert!(html.contains("Connect Linear"), "{html}");
    let resp = browser
        .post(
            &format!("{base}/my/tokens/linear/connect"),
            &[("csrf", &field(&html, "csrf"))],
        )
        .await;
    assert_eq!(resp.status(), 302, "connect redirects to the provider");
    let to_provider = location(&resp);
    let resp = browser.get(&to_provider).await;
    assert_eq!(resp.status(), 302, "the fake provider approves");
    location(&resp)
}

/// Connect all the way; return where the gateway sends the browser at the end.
async fn connect(browser: &mut Browser, base: &str) -> String {
    let callback = start_connect(browser, base).await;
    assert!(
        callback.starts_with(&format!("{base}/my/oauth/callback?")),
        "{callback}"
    );
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    location(&resp)
}

/// An MCP session for alice on `linear`; `Ok(LINEAR_TOKEN as the backend sees it)`
/// or `Err(the error answer to initialize)`.
async fn backend_token(base: &str) -> Result<String, (u16, String)> {
    let t = tokens_for(
        base,
        "alice@example.com",
        "pw-alice",
        Some(&format!("{base}/linear/mcp")),
    )
    .await;
    let mut mcp = Mcp::new(format!("{base}/linear/mcp")).with_bearer(&t.access);
    let resp = mcp
        .post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .send()
        .await
        .expect("initialize");
    if resp.status() != 200 {
        let status = resp.status().as_u16();
        return Err((status, resp.text().await.unwrap_or_default()));
    }
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = common::messages(resp).await;
    if let Some(e) = body.last().and_then(|m| m.get("error")) {
        return Err((200, e.to_string()));
    }
    mcp.session = Some(session.expect("Mcp-Session-Id on initialize"));
    let resp = mcp
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .expect("initialized");
    assert_eq!(resp.status(), 202);
    let answer = mcp.call("env", json!({"name": "LINEAR_TOKEN"})).await;
    let _ = mcp.delete().await;
    Ok(text_of(&answer))
}

fn raw_store(s: &Setup) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let mut p = s.db_path().into_os_string();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty(), "the store file exists");
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn connect_refresh_before_expiry_and_disconnect() {
    let s = setup().await;
    let base = s.gw.url.clone();
    let mut alice = Browser::default();
    sign_in(&mut alice, &base, "alice@example.com", "pw-alice").await;
    let html = tokens_page(&mut alice, &base).await;
    assert!(html.contains("not set"), "{html}");

    // Near expiry from the start: the first session start must refresh.
    s.fake.knobs(|k| k.access_ttl = 30);
    let end = connect(&mut alice, &base).await;
    assert_eq!(end, format!("{base}/my/tokens?saved=linear"));
    {
        let st = s.fake.state();
        let q = &st.last_authorize;
        assert_eq!(q.get("scope").map(String::as_str), Some("read write"));
        assert_eq!(
            q.get("redirect_uri"),
            Some(&format!("{base}/my/oauth/callback"))
        );
        assert!(
            q.get("state").is_some_and(|s| s.len() > 40),
            "an unguessable state"
        );
        assert_eq!(st.code_hits, 1);
        assert_eq!(st.last_client_auth, Some("basic"));
    }
    let html = tokens_page(&mut alice, &base).await;
    assert!(html.contains("Status: set"), "{html}");
    assert!(html.contains("Disconnect"), "{html}");
    let first_access = s.fake.last_access_token();
    assert!(
        !html.contains(&first_access),
        "the page never shows the token"
    );

    // At rest: sealed, neither token in the raw database.
    let raw = raw_store(&s);
    {
        let st = s.fake.state();
        for t in st.access_tokens.iter().chain(&st.refresh_tokens) {
            assert!(!contains(&raw, t), "a token in clear in the store file");
        }
    }

    // Session 1: the token expires within 60 s, so it is refreshed first and the
    // backend gets the new one.
    let seen = backend_token(&base).await.expect("session starts");
    assert_eq!(s.fake.refresh_hits(), 1);
    let second = s.fake.last_access_token();
    assert_ne!(second, first_access);
    assert_eq!(seen, second);

    // Session 2: still near expiry; the rotated refresh token must have been
    // kept (the fake refuses the old one).
    s.fake.knobs(|k| k.access_ttl = 3600);
    let seen = backend_token(&base).await.expect("session starts");
    assert_eq!(s.fake.refresh_hits(), 2);
    let third = s.fake.last_access_token();
    assert_eq!(seen, third);

    // Session 3: the token is good for an hour: no refresh.
    let seen = backend_token(&base).await.expect("session starts");
    assert_eq!(s.fake.refresh_hits(), 2);
    assert_eq!(seen, third);

    let raw = raw_store(&s);
    {
        let st = s.fake.state();
        for t in st.access_tokens.iter().chain(&st.refresh_tokens) {
            assert!(!contains(&raw, t), "a token in clear in the store file");
        }
    }

    // Disconnect needs its CSRF value too.
    let resp = alice
        .post(&format!("{base}/my/tokens/linear/disconnect"), &[])
        .await;
    assert_eq!(resp.status(), 403);
    let html = tokens_page(&mut alice, &base).await;
    let resp = alice
        .post(
            &format!("{base}/my/tokens/linear/disconnect"),
            &[("csrf", &field(&html, "csrf"))],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), format!("{base}/my/tokens?removed=linear"));
    let html = tokens_page(&mut alice, &base).await;
    assert!(html.contains("Connect Linear"), "{html}");
    assert!(html.contains("not set"), "{html}");
}

#[tokio::test]
async fn a_provider_that_takes_the_secret_only_in_the_body_works_too() {
    let s = setup().await;
    let base = s.gw.url.clone();
    let mut alice = Browser::default();
    sign_in(&mut alice, &base, "alice@example.com", "pw-alice").await;
    s.fake.knobs(|k| k.post_only = true);
    assert_eq!(
        connect(&mut alice, &base).await,
        format!("{base}/my/tokens?saved=linear")
    );
    assert_eq!(s.fake.state().last_client_auth, Some("post"));
    assert_eq!(backend_token(&base).await, Ok(s.fake.last_access_token()));
}

#[tokio::test]
async fn a_failed_refresh_is_a_clear_error_not_an_expired_token() {
    let s = setup().await;
    let base = s.gw.url.clone();
    let mut alice = Browser::default();
    sign_in(&mut alice, &base, "alice@example.com", "pw-alice").await;
    s.fake.knobs(|k| {
        k.access_ttl = 30;
        k.refresh_fails = true;
    });
    assert_eq!(
        connect(&mut alice, &base).await,
        format!("{base}/my/tokens?saved=linear")
    );
    let expiring = s.fake.last_access_token();
    let (status, body) = backend_token(&base)
        .await
        .expect_err("no session with a token about to expire");
    assert_eq!(s.fake.refresh_hits(), 1);
    assert!(
        body.contains("Linear connection could not be renewed")
            && body.contains("connect Linear again")
            && body.contains(&format!("{base}/my/tokens")),
        "{status} {body}"
    );
    assert!(!body.contains(&expiring), "the token is not in the error");
    // The grant is dead at the provider: the page offers Connect again.
    let html = tokens_page(&mut alice, &base).await;
    assert!(html.contains("Connect Linear"), "{html}");
}

#[tokio::test]
async fn connect_needs_csrf_and_the_callback_its_own_person_once() {
    let s = setup().await;
    let base = s.gw.url.clone();
    let mut alice = Browser::default();
    sign_in(&mut alice, &base, "alice@example.com", "pw-alice").await;
    let mut bob = Browser::default();
    sign_in(&mut bob, &base, "bob@example.com", "pw-bob").await;

    // No CSRF value, or someone else's: 403, and nothing reaches the provider.
    let resp = alice
        .post(&format!("{base}/my/tokens/linear/connect"), &[])
        .await;
    assert_eq!(resp.status(), 403);
    let bobs_page = tokens_page(&mut bob, &base).await;
    let resp = alice
        .post(
            &format!("{base}/my/tokens/linear/connect"),
            &[("csrf", &field(&bobs_page, "csrf"))],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(s.fake.state().authorize_hits, 0);

    // Alice's callback opened in Bob's browser: refused, and used up.
    let callback = start_connect(&mut alice, &base).await;
    let resp = bob.get(&callback).await;
    assert_eq!(resp.status(), 403);
    let resp = alice.get(&callback).await;
    assert_eq!(resp.status(), 400, "single use, even after a refusal");
    assert_eq!(s.fake.state().code_hits, 0, "no code was redeemed");
    let html = tokens_page(&mut bob, &base).await;
    assert!(html.contains("not set"), "{html}");

    // Not signed in: refused.
    let callback = start_connect(&mut alice, &base).await;
    let resp = Browser::default().get(&callback).await;
    assert_eq!(resp.status(), 401);

    // A finished callback replayed: refused.
    let callback = start_connect(&mut alice, &base).await;
    let resp = alice.get(&callback).await;
    assert_eq!(location(&resp), format!("{base}/my/tokens?saved=linear"));
    let resp = alice.get(&callback).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(s.fake.state().code_hits, 1);

    // A state that was never issued.
    let forged = format!(
        "{base}/my/oauth/callback?code=x&state=mgs_{}",
        "A".repeat(43)
    );
    assert_eq!(alice.get(&forged).await.status(), 400);

    // The provider says no: back to the page with its reason.
    let callback = start_connect(&mut bob, &base).await;
    let state = query_param(&callback, "state").expect("state");
    let denied = format!("{base}/my/oauth/callback?error=access_denied&state={state}");
    let resp = bob.get(&denied).await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    // The URL carries only a message id; the page shows the message once.
    assert!(!back.contains("access_denied"), "{back}");
    let html = bob.get(&back).await.text().await.expect("page");
    assert!(
        html.contains("Linear did not connect (access_denied)"),
        "{html}"
    );
    assert!(html.contains("not set"), "{html}");
    // A crafted id shows nothing.
    let html = bob
        .get(&format!("{base}/my/tokens?error=Your+account+is+suspended"))
        .await
        .text()
        .await
        .expect("page");
    assert!(!html.contains("suspended"), "{html}");
}
