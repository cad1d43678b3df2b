//! The browser side of the authorization server, end to end through the real
//! binary over HTTP: register, authorize with PKCE, the local sign-in form,
//! consent, the code; the two stages of request validation, CSRF and browser
//! binding, password limits.

mod common;

use common::oauth::*;
use common::{Mcp, gateway, text_of};
use serde_json::{Value, json};

#[tokio::test]
async fn end_to_end_register_authorize_sign_in_consent_call_refresh_revoke() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let resource = format!("{base}/a/mcp");

    // Discovery starts from a 401.
    let resp = mcp_status(&resource, None).await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(&format!(
            "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/a/mcp\""
        )),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    let prm: Value = common::get_json(&format!(
        "{base}/.well-known/oauth-protected-resource/a/mcp"
    ))
    .await;
    assert_eq!(prm["resource"], resource.as_str());
    assert_eq!(prm["authorization_servers"][0], base.as_str());

    let t = tokens_for(&base, "alice@example.com", "pw-alice", Some(&resource)).await;

    // The token works for MCP.
    let mut mcp = Mcp::new(resource.clone()).with_bearer(&t.access);
    mcp.initialize().await;
    let answer = mcp.call("echo", json!({"text": "hello"})).await;
    assert_eq!(text_of(&answer), "hello");

    // Refresh rotates.
    let (status, body) = refresh(&base, &t.refresh, &t.client_id).await;
    assert_eq!(status, 200, "{body}");
    let refresh2 = body["refresh_token"].as_str().unwrap().to_string();
    let access2 = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, t.refresh);
    let mut mcp2 = Mcp::new(resource.clone()).with_bearer(&access2);
    mcp2.initialize().await;

    // Revocation of the refresh token ends the family: both access tokens stop working.
    let resp = no_redirects()
        .post(format!("{base}/revoke"))
        .form(&[("token", refresh2.as_str()), ("client_id", &t.client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "public clients revoke with client_id alone"
    );
    assert_eq!(mcp_status(&resource, Some(&access2)).await.status(), 401);
    assert_eq!(mcp_status(&resource, Some(&t.access)).await.status(), 401);
    let (status, body) = refresh(&base, &refresh2, &t.client_id).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    // Missing challenge: error back to the client (it and its URI are valid).
    let url = format!(
        "{base}/authorize?response_type=code&client_id={client}&redirect_uri={REDIRECT}&state=s1"
    );
    let resp = browser.get(&url).await;
    assert_eq!(resp.status(), 302);
    let back = location(&resp);
    assert!(back.starts_with(REDIRECT));
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("s1"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(base.as_str()));
    // plain is refused.
    let resp = browser
        .get(&format!(
            "{url}&code_challenge={}&code_challenge_method=plain",
            p.challenge
        ))
        .await;
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
    // Wrong verifier at the token endpoint.
    let authorize = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s2",
    }
    .url();
    let back = sign_in_and_consent(
        &mut browser,
        &base,
        &authorize,
        "alice@example.com",
        "pw-alice",
    )
    .await;
    let code = query_param(&back, "code").unwrap();
    let other = pkce();
    let (status, body) = redeem(&base, &code, &other.verifier, &client).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // The code was consumed by the failed attempt: the right verifier is too late.
    let (status, _) = redeem(&base, &code, &p.verifier, &client).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_clients_and_redirects_get_a_page_never_a_redirect() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    for (client_id, redirect) in [
        ("not-registered", REDIRECT),
        (client.as_str(), "https://attacker.example/cb"),
        (client.as_str(), "http://127.0.0.1:9/other-path"),
    ] {
        let url = Authorize {
            base: &base,
            client_id,
            redirect_uri: redirect,
            challenge: &p.challenge,
            resource: None,
            scope: None,
            state: "s",
        }
        .url();
        let resp = browser.get(&url).await;
        assert_eq!(resp.status(), 400, "{client_id} {redirect}");
        assert!(resp.headers().get("location").is_none());
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
    }
    // Loopback redirects match on any port (RFC 8252).
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: "http://127.0.0.1:43210/callback",
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    assert_eq!(browser.get(&url).await.status(), 302);
    // The token request must repeat the redirect URI exactly.
    let url = authorize_url(&base, &client, &p.challenge);
    let back =
        sign_in_and_consent(&mut browser, &base, &url, "alice@example.com", "pw-alice").await;
    let code = query_param(&back, "code").unwrap();
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:10/callback"),
            ("code_verifier", &p.verifier),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn forms_need_their_csrf_value_and_browser() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = authorize_url(&base, &client, &p.challenge);
    let resp = browser.get(&url).await;
    let login = absolute(&base, &location(&resp));
    let html = browser.get(&login).await.text().await.unwrap();
    let request = field(&html, "request");
    // No CSRF value.
    let resp = browser
        .post(
            &format!("{base}/login"),
            &[
                ("request", &request),
                ("email", "alice@example.com"),
                ("password", "pw-alice"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    // Another browser (no cookie) with the right values.
    let html = browser.get(&login).await.text().await.unwrap();
    let csrf = field(&html, "csrf");
    let mut other = Browser::default();
    let resp = other
        .post(
            &format!("{base}/login"),
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", "pw-alice"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    // Wrong password: 401 and the form again, no session.
    let resp = browser
        .post(
            &format!("{base}/login"),
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("email", "alice@example.com"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 401);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Wrong email or password"));
    // The right one, with the fresh CSRF value from the re-rendered form.
    let resp = browser
        .post(
            &format!("{base}/login"),
            &[
                ("request", &request),
                ("csrf", &field(&html, "csrf")),
                ("email", "alice@example.com"),
                ("password", "pw-alice"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let consent = absolute(&base, &location(&resp));
    // The consent page names the client, where it returns, and who you are; it
    // cannot be framed.
    let page = browser.get(&consent).await;
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Test Client")
            && html.contains("127.0.0.1:9")
            && html.contains("alice@example.com"),
        "{html}"
    );
    // Consent without CSRF is refused; deny sends access_denied back.
    let resp = browser
        .post(
            &format!("{base}/consent"),
            &[
                ("request", &field(&html, "request")),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let resp = browser
        .post(
            &format!("{base}/consent"),
            &[
                ("request", &field(&html, "request")),
                ("csrf", &field(&html, "csrf")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("access_denied")
    );
    // Cookies: HttpOnly, SameSite; on plain-http loopback no Secure/__Host- (browsers would drop them).
    assert!(
        browser
            .set_cookie_lines
            .iter()
            .all(|c| c.contains("HttpOnly") && c.contains("SameSite=Lax"))
    );
}

#[tokio::test]
async fn password_attempts_are_limited() {
    let mut auth = local_auth("memory");
    auth["rateLimits"]["login"] = json!(3);
    let gw = gateway(config_with(auth)).await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = authorize_url(&base, &client, &p.challenge);
    let resp = browser.get(&url).await;
    let login = absolute(&base, &location(&resp));
    let mut html = browser.get(&login).await.text().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = browser
            .post(
                &format!("{base}/login"),
                &[
                    ("request", &field(&html, "request")),
                    ("csrf", &field(&html, "csrf")),
                    ("email", "alice@example.com"),
                    ("password", "guess"),
                ],
            )
            .await;
        statuses.push(resp.status().as_u16());
        let body = resp.text().await.unwrap();
        if body.contains("name=\"csrf\"") {
            html = body;
        }
    }
    assert_eq!(statuses, vec![401, 401, 401, 429]);
}

#[tokio::test]
async fn two_sign_ins_in_flight_in_one_browser_both_finish() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let one = public_client(&base).await;
    let (_, two) = register(&base, json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Two"})).await;
    let two = two["client_id"].as_str().unwrap().to_string();
    let (p1, p2) = (pkce(), pkce());
    let mut browser = Browser::default();
    let start = |client: &str, challenge: &str| {
        Authorize {
            base: &base,
            client_id: client,
            redirect_uri: REDIRECT,
            challenge,
            resource: None,
            scope: None,
            state: "s",
        }
        .url()
    };
    let login1 = absolute(
        &base,
        &location(&browser.get(&start(&one, &p1.challenge)).await),
    );
    let login2 = absolute(
        &base,
        &location(&browser.get(&start(&two, &p2.challenge)).await),
    );
    for login in [login1, login2] {
        let page = browser.get(&login).await;
        let html = page.text().await.unwrap();
        let resp = browser
            .post(
                &format!("{base}/login"),
                &[
                    ("request", &field(&html, "request")),
                    ("csrf", &field(&html, "csrf")),
                    ("email", "alice@example.com"),
                    ("password", "pw-alice"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 302, "each sign-in finishes");
        let back = approve(&mut browser, &base, &absolute(&base, &location(&resp))).await;
        assert!(back.contains("code="), "{back}");
    }
}
