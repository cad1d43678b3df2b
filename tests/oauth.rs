//! The authorization server and resource server, end to end through the real
//! binary over HTTP: discovery, registration, authorize with PKCE, the local
//! sign-in form, consent, tokens, MCP calls, refresh rotation, revocation, and a
//! negative test for each rule.

mod common;

use std::time::Duration;

use common::oauth::*;
use common::{Mcp, gateway, gateway_at, text_of};
use serde_json::{Value, json};

async fn local_gateway() -> common::Proc {
    gateway(config_with(local_auth("memory"))).await
}

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
    let prm: Value = common::http()
        .get(format!("{base}/.well-known/oauth-protected-resource/a/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], resource.as_str());
    assert_eq!(prm["authorization_servers"][0], base.as_str());

    let t = tokens_for(&base, "alice@example.com", "pw-alice", Some(&resource)).await;

    // The token works for MCP.
    let mut mcp = Mcp::new(resource.clone()).with_bearer(&t.access);
    mcp.initialize().await;
    let answer = mcp.call("echo", json!({"text": "hello"})).await;
    assert_eq!(text_of(&answer), "hello");

    // Refresh rotates.
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("client_id", &t.client_id),
        ],
    )
    .await;
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
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
            ("client_id", &t.client_id),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn metadata_is_served_everywhere_clients_look() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let resp = common::http()
            .get(format!("{base}{path}"))
            .header("origin", "https://inspector.example")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://inspector.example",
            "browser clients can read {path}"
        );
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["issuer"], base.as_str());
        assert_eq!(doc["authorization_endpoint"], format!("{base}/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{base}/token"));
        assert_eq!(doc["registration_endpoint"], format!("{base}/register"));
        assert_eq!(doc["revocation_endpoint"], format!("{base}/revoke"));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["response_types_supported"], json!(["code"]));
    }
    let jwks: Value = common::http()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0]["kid"].is_string());
    let root: Value = common::http()
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["resource"], base.as_str());
    // Legacy SSE endpoint has its own resource document.
    let sse: Value = common::http()
        .get(format!("{base}/.well-known/oauth-protected-resource/b/sse"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sse["resource"], format!("{base}/b/sse"));
    // A preflight from a browser client to the MCP endpoint is answered before auth.
    let resp = common::http()
        .request(reqwest::Method::OPTIONS, format!("{base}/a/mcp"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "preflight is not a 401: {}",
        resp.status()
    );
    // And the 401 exposes WWW-Authenticate to browser code.
    let resp = common::http()
        .post(format!("{base}/a/mcp"))
        .header("origin", "http://localhost:6274")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn metadata_under_a_base_path_is_also_at_the_origin() {
    let port = common::free_port();
    let mut config = config_with(local_auth("memory"));
    config["proxy"]["baseURL"] = json!(format!("http://127.0.0.1:{port}/gw"));
    let gw = gateway_at(config, &[], &format!("127.0.0.1:{port}")).await;
    let origin = gw.url.clone();
    let issuer = format!("{origin}/gw");
    for path in [
        "/.well-known/oauth-authorization-server/gw".to_string(),
        "/.well-known/openid-configuration/gw".to_string(),
        "/gw/.well-known/openid-configuration".to_string(),
        "/gw/.well-known/oauth-authorization-server".to_string(),
    ] {
        let doc: Value = common::http()
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|_| panic!("{path} is JSON"));
        assert_eq!(doc["issuer"], issuer.as_str(), "{path}");
        assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    }
    let prm: Value = common::http()
        .get(format!(
            "{origin}/.well-known/oauth-protected-resource/gw/a/mcp"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("{issuer}/a/mcp"));
    // The whole flow works under the base path.
    let t = tokens_for(
        &issuer,
        "bob@example.com",
        "pw-bob",
        Some(&format!("{issuer}/a/mcp")),
    )
    .await;
    let mut mcp = Mcp::new(format!("{issuer}/a/mcp")).with_bearer(&t.access);
    mcp.initialize().await;
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
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &other.verifier),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // The code was consumed by the failed attempt: the right verifier is too late.
    let (status, _) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
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
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
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
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
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
        async move {
            token(
                &base,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", &client),
                ],
            )
            .await
        }
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
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.access),
            ("client_id", &t.client_id),
        ],
    )
    .await;
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
async fn forms_need_their_csrf_value_and_browser() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
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
async fn registration_rules() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    for bad in [
        "javascript:alert(1)",
        "https://client.example/cb#frag",
        "http://client.example/cb",
        "data:text/html,x",
    ] {
        let (status, body) = register(
            &base,
            json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{bad}: {body}");
    }
    // What Cursor sends in one request.
    let (status, body) = register(
        &base,
        json!({"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback", "https://cursor.com/cb", "http://localhost:8787/callback"],
               "token_endpoint_auth_method": "none", "client_name": "Cursor"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The same public client registering again gets the same id.
    let meta = json!({"redirect_uris": ["http://localhost:1234/callback"], "token_endpoint_auth_method": "none", "client_name": "Claude Code"});
    let (_, one) = register(&base, meta.clone()).await;
    let (_, two) = register(&base, meta).await;
    assert_eq!(one["client_id"], two["client_id"]);
    // No auth method given: RFC 7591's default, client_secret_basic, with a secret.
    let (status, conf) = register(&base, json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 201);
    let secret = conf["client_secret"]
        .as_str()
        .expect("a secret")
        .to_string();
    let id = conf["client_id"].as_str().unwrap().to_string();
    // A confidential client must authenticate at /token.
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "mgr_x"),
            ("client_id", &id),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    let resp = no_redirects()
        .post(format!("{base}/token"))
        .basic_auth(&id, Some("wrong-secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "mgr_x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = no_redirects()
        .post(format!("{base}/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "mgr_x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "authenticated; the grant itself is invalid"
    );
    // Unsupported grant types in registration.
    let (status, body) = register(
        &base,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn closed_registration_and_configured_clients() {
    let mut auth = local_auth("memory");
    auth["registration"] = json!("closed");
    auth["clients"] = json!([{"clientId": "ci-tool", "clientSecret": "a-long-enough-secret-value", "redirectUris": [REDIRECT], "name": "CI"}]);
    let gw = gateway(config_with(auth)).await;
    let base = gw.url.clone();
    let (status, body) = register(&base, json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 403, "{body}");
    let doc: Value = common::http()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc.get("registration_endpoint").is_none());
    // The configured client signs in with client_secret_post.
    let mut browser = Browser::default();
    let p = pkce();
    let url = Authorize {
        base: &base,
        client_id: "ci-tool",
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    let back = sign_in_and_consent(&mut browser, &base, &url, "bob@example.com", "pw-bob").await;
    let code = query_param(&back, "code").unwrap();
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_id", "ci-tool"),
            ("client_secret", "a-long-enough-secret-value"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
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
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("client_id", &t.client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The store holds no token in clear.
    let raw = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(&t.refresh) && !text.contains(body["refresh_token"].as_str().unwrap()));
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
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
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
async fn client_metadata_documents_on_private_addresses_are_refused() {
    let gw = local_gateway().await;
    let base = gw.url.clone();
    let p = pkce();
    for client_id in [
        "https://127.0.0.1:9/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/client.json",
        "https://localhost/client.json",
    ] {
        let url = Authorize {
            base: &base,
            client_id,
            redirect_uri: REDIRECT,
            challenge: &p.challenge,
            resource: None,
            scope: None,
            state: "s",
        }
        .url();
        let resp = Browser::default().get(&url).await;
        assert_eq!(resp.status(), 400, "{client_id}");
        assert!(resp.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn client_metadata_documents_work_when_allowed_for_development() {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doc_url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let doc = json!({"client_id": doc_url, "client_name": "Metadata Client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    let app =
        axum::Router::new().route("/client.json", get(move || async move { axum::Json(doc) }));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let mut auth = local_auth("memory");
    auth["clientMetadataDocuments"] = json!({"allowPrivateNetworks": true});
    let gw = gateway(config_with(auth)).await;
    let base = gw.url.clone();
    let mut browser = Browser::default();
    let t = tokens_with(
        &base,
        &mut browser,
        &doc_url,
        "alice@example.com",
        "pw-alice",
        None,
        None,
    )
    .await;
    assert_eq!(
        mcp_status(&format!("{base}/a/mcp"), Some(&t.access))
            .await
            .status(),
        200
    );
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
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    let resp = browser.get(&url).await;
    assert!(location(&resp).contains("/consent?"));
    // Someone not signed in is sent to sign in first.
    let resp = Browser::default().get(&format!("{base}/my/consents")).await;
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).contains("/my/login"));
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
    let url = Authorize {
        base: &base,
        client_id: &client,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    let resp = browser.get(&url).await;
    assert!(
        location(&resp).contains("/consent?"),
        "a gateway-wide request asks again"
    );
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
    let (status, body) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("client_id", &t.client_id),
        ],
    )
    .await;
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
