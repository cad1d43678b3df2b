//! Consent, end to end through the real binary: remembered per client, scopes
//! and service, shared sign-in across clients, and revoked with its tokens.

mod common;

use common::oauth::*;
use serde_json::json;

#[tokio::test]
async fn consent_is_remembered_and_sign_in_is_shared_across_clients() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let mut browser = Browser::default();
    tokens_with(
        &base,
        &mut browser,
        &client,
        "alice@example.com",
        "pw-alice",
        None,
        None,
    )
    .await;
    // Same browser, same client: no sign-in, no consent page: straight back with a code.
    let p = pkce();
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "again",
    }
    .url();
    let resp = browser.get(&url).await;
    let back = location(&resp);
    assert!(
        back.starts_with(REDIRECT) && back.contains("code="),
        "{back}"
    );
    // Another client: still signed in, but asked for consent.
    let (_, other) = register(&base, json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Other"})).await;
    let url = Authorize {
        base: &base,
        client_id: other["client_id"].as_str().unwrap(),
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    let resp = browser.get(&url).await;
    assert!(location(&resp).contains("/consent?"), "{}", location(&resp));
}

#[tokio::test]
async fn a_consent_can_be_revoked_with_its_tokens() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let mut browser = Browser::default();
    let t = tokens_with(
        &base,
        &mut browser,
        &client,
        "alice@example.com",
        "pw-alice",
        None,
        None,
    )
    .await;
    let page = browser.get(&format!("{base}/my/consents")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Test Client"), "{html}");
    // Without the CSRF value: refused.
    let resp = browser
        .post(
            &format!("{base}/my/consents/revoke"),
            &[("client_id", &client)],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(&t.access))
            .await
            .status(),
        200
    );
    let resp = browser
        .post(
            &format!("{base}/my/consents/revoke"),
            &[("client_id", &client), ("csrf", &field(&html, "csrf"))],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(&t.access))
            .await
            .status(),
        401,
        "its tokens are revoked"
    );
    // The client must ask again.
    let p = pkce();
    let url = authorize_url(&base, &client, &p.challenge);
    let resp = browser.get(&url).await;
    assert!(location(&resp).contains("/consent?"));
    // Someone not signed in is sent to sign in first.
    let resp = Browser::default().get(&format!("{base}/my/consents")).await;
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).contains("/my/login"));
}

#[tokio::test]
async fn consent_for_one_service_is_not_consent_for_all() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let mut browser = Browser::default();
    tokens_with(
        &base,
        &mut browser,
        &client,
        "alice@example.com",
        "pw-alice",
        Some(&format!("{base}/a/mcp")),
        None,
    )
    .await;
    let p = pkce();
    let url = authorize_url(&base, &client, &p.challenge);
    let resp = browser.get(&url).await;
    assert!(
        location(&resp).contains("/consent?"),
        "a gateway-wide request asks again"
    );
}
