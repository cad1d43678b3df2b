//! Tokens, end to end through the real binary: codes are single use, tokens
//! are bound to their service and kind, refresh rotation and reuse, scopes,
//! sessions bound to their person, persistence across a restart, and losing
//! access at the next refresh.

mod common;

use std::time::Duration;

use common::oauth::*;
use common::{Mcp, gateway, gateway_at};
use serde_json::json;

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = authorize_url(&base, &client, &p.challenge);
    let back =
        sign_in_and_consent(&mut browser, &base, &url, "alice@example.com", "pw-alice").await;
    let code = query_param(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", p.verifier.as_str()),
        ("client_id", client.as_str()),
    ];
    let (status, first) = token(&base, &form).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(access))
            .await
            .status(),
        200
    );
    let (status, body) = token(&base, &form).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(access))
            .await
            .status(),
        401,
        "the first redemption's access token is revoked"
    );
    let (status, _) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 400, "and its refresh token");
}

#[tokio::test]
async fn tokens_are_bound_to_their_service() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let a = format!("{base}/a/mcp");
    let b = format!("{base}/b/mcp");
    let t = tokens_for(&base, "alice@example.com", "pw-alice", Some(&a)).await;
    assert_eq!(mcp_status(&a, Some(&t.access)).await.status(), 200);
    let resp = mcp_status(&b, Some(&t.access)).await;
    assert_eq!(
        resp.status(),
        401,
        "a token for /a/mcp is refused at /b/mcp"
    );
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // Legacy SSE of the same service accepts it.
    let resp = common::http()
        .get(format!("{base}/a/sse"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // Without a resource: a gateway-wide token, accepted everywhere.
    let g = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    assert_eq!(mcp_status(&a, Some(&g.access)).await.status(), 200);
    assert_eq!(mcp_status(&b, Some(&g.access)).await.status(), 200);
    // ChatGPT adds a query string to the resource: still service a.
    let q = tokens_for(
        &base,
        "alice@example.com",
        "pw-alice",
        Some(&format!("{a}?x=1")),
    )
    .await;
    assert_eq!(mcp_status(&a, Some(&q.access)).await.status(), 200);
    assert_eq!(mcp_status(&b, Some(&q.access)).await.status(), 401);
    // An unknown resource is refused back to the client.
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: Some("https://elsewhere.example/mcp"),
        scope: None,
        state: "s",
    }
    .url();
    let resp = browser.get(&url).await;
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_target")
    );
}

#[tokio::test]
async fn require_resource_refuses_gateway_wide_tokens() {
    let mut auth = local_auth("memory");
    auth["requireResource"] = json!(true);
    let gw = gateway(config_with(auth)).await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let url = authorize_url(&base, &client, &p.challenge);
    let resp = Browser::default().get(&url).await;
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_target")
    );
}

#[tokio::test]
async fn refresh_reuse_within_grace_works_after_it_revokes_the_family() {
    let mut auth = local_auth("memory");
    auth["refreshGrace"] = json!("1s");
    let gw = gateway(config_with(auth)).await;
    let base = gw.url.clone();
    let t = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let refresh = |rt: String| {
        let base = base.clone();
        let client = t.client_id.clone();
        async move { refresh(&base, &rt, &client).await }
    };
    let (s1, first) = refresh(t.refresh.clone()).await;
    assert_eq!(s1, 200);
    // A parallel session of the same client refreshes from the same stored token.
    let (s2, second) = refresh(t.refresh.clone()).await;
    assert_eq!(s2, 200, "within the grace window: {second}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s3, body) = refresh(t.refresh.clone()).await;
    assert_eq!(s3, 400);
    assert_eq!(body["error"], "invalid_grant");
    // The whole family is gone, including the tokens issued in the grace window.
    let (s4, _) = refresh(second["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(s4, 400);
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), first["access_token"].as_str())
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn token_kinds_cannot_pass_for_one_another() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let t = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let a = format!("{base}/a/mcp");
    // A refresh token is not an access token.
    assert_eq!(mcp_status(&a, Some(&t.refresh)).await.status(), 401);
    // An access token is not a refresh token.
    let (status, body) = refresh(&base, &t.access, &t.client_id).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    // A refresh token is not an authorization code.
    let (status, _) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &t.refresh),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce().verifier),
            ("client_id", &t.client_id),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // Garbage and tampered tokens.
    assert_eq!(mcp_status(&a, Some("not-a-token")).await.status(), 401);
    let mut tampered = t.access.clone();
    tampered.pop();
    tampered.push(if t.access.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(mcp_status(&a, Some(&tampered)).await.status(), 401);
    // The token of another client cannot be refreshed by this one.
    let other = public_client(&base).await;
    let _ = other;
    let (status, _) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("client_id", "mgc-unknown"),
        ],
    )
    .await;
    assert_eq!(status, 401, "unknown client: invalid_client");
}

#[tokio::test]
async fn insufficient_scope_is_403_with_the_scope_needed() {
    let mut config = config_with(local_auth("memory"));
    config["mcpServers"]["b"]["requiredScopes"] = json!(["mcp", "admin"]);
    let gw = gateway(config).await;
    let base = gw.url.clone();
    let b = format!("{base}/b/mcp");
    // A client asking for `mcp` only (no scope asked: the audience's scopes are granted).
    let client = public_client(&base).await;
    let mut browser = Browser::default();
    let t = tokens_with(
        &base,
        &mut browser,
        &client,
        "alice@example.com",
        "pw-alice",
        None,
        Some("mcp"),
    )
    .await;
    let resp = mcp_status(&b, Some(&t.access)).await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"mcp admin\""),
        "{challenge}"
    );
    // Step up: ask for both.
    let t = tokens_with(
        &base,
        &mut browser,
        &client,
        "alice@example.com",
        "pw-alice",
        None,
        Some("mcp admin"),
    )
    .await;
    assert_eq!(mcp_status(&b, Some(&t.access)).await.status(), 200);
}

#[tokio::test]
async fn a_session_is_only_usable_by_the_person_who_opened_it() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let a = format!("{base}/a/mcp");
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    let mut mcp = Mcp::new(a.clone()).with_bearer(&alice.access);
    mcp.initialize().await;
    assert_eq!(mcp.ping_status().await, 200);
    let mut stolen = Mcp::new(a).with_bearer(&bob.access);
    stolen.session = mcp.session.clone();
    assert_eq!(
        stolen.ping_status().await,
        404,
        "bob gets 'unknown session'"
    );
    assert_eq!(stolen.delete().await, 404);
    assert_eq!(mcp.ping_status().await, 200, "alice's session is untouched");
}

#[tokio::test]
async fn clients_tokens_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("mcpgate.db");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = config_with(local_auth(&format!("sqlite:{}", db.display())));
    config["proxy"]["baseURL"] = json!(format!("http://{addr}"));
    let gw = gateway_at(config.clone(), &[], &addr).await;
    let base = gw.url.clone();
    let t = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    drop(gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _gw = gateway_at(config, &[], &addr).await;
    // The access token still verifies (same key), the refresh token still works.
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(&t.access))
            .await
            .status(),
        200
    );
    let (status, body) = refresh(&base, &t.refresh, &t.client_id).await;
    assert_eq!(status, 200, "{body}");
    // The store holds no token in clear.
    let raw = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(&t.refresh) && !text.contains(body["refresh_token"].as_str().unwrap()));
}

#[tokio::test]
async fn percent_encoded_service_names_do_not_skip_authentication() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    for path in ["/%61/mcp", "/%61/mcp/", "/%61/sse"] {
        let resp = if path.ends_with("sse") {
            common::http()
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
        } else {
            mcp_status(&format!("{base}{path}"), None).await
        };
        assert_eq!(resp.status(), 401, "{path} without a token");
    }
}

#[tokio::test]
async fn scopes_default_to_what_the_resource_needs() {
    let mut config = config_with(local_auth("memory"));
    config["mcpServers"]["b"]["requiredScopes"] = json!(["notes:read"]);
    let gw = gateway(config).await;
    let base = gw.url.clone();
    let b = format!("{base}/b/mcp");
    // ChatGPT: no scope, or only `openid`.
    for scope in [None, Some("openid")] {
        let client = public_client(&base).await;
        let mut browser = Browser::default();
        let t = tokens_with(
            &base,
            &mut browser,
            &client,
            "alice@example.com",
            "pw-alice",
            Some(&b),
            scope,
        )
        .await;
        assert_eq!(
            mcp_status(&b, Some(&t.access)).await.status(),
            200,
            "{scope:?}"
        );
    }
}

#[tokio::test]
async fn a_removed_user_loses_access_at_the_next_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mcpgate.db");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = config_with(local_auth(&format!("sqlite:{}", db.display())));
    config["proxy"]["baseURL"] = json!(format!("http://{addr}"));
    let gw = gateway_at(config.clone(), &[], &addr).await;
    let base = gw.url.clone();
    let t = tokens_for(&base, "bob@example.com", "pw-bob", None).await;
    drop(gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // bob is no longer a user.
    let users = config["proxy"]["auth"]["idp"]["users"]
        .as_array_mut()
        .unwrap();
    users.retain(|u| u["email"] != "bob@example.com");
    let _gw = gateway_at(config, &[], &addr).await;
    let (status, body) = refresh(&base, &t.refresh, &t.client_id).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no longer"),
        "{body}"
    );
}

#[tokio::test]
async fn redirect_uri_may_be_omitted_at_token_only_if_omitted_at_authorize() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = format!(
        "{base}/authorize?response_type=code&client_id={client}&code_challenge={}&code_challenge_method=S256&state=s",
        p.challenge
    );
    let back =
        sign_in_and_consent(&mut browser, &base, &url, "alice@example.com", "pw-alice").await;
    assert!(
        back.starts_with(REDIRECT),
        "the single registered URI is used: {back}"
    );
    let code = query_param(&back, "code").unwrap();
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &p.verifier),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
