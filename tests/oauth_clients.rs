//! OAuth clients, end to end through the real binary: dynamic registration
//! and its rules, closed registration with configured clients, and Client ID
//! Metadata Documents (refused on private addresses unless allowed).

mod common;

use common::gateway;
use common::oauth::*;
use serde_json::{Value, json};

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
    let doc: Value =
        common::get_json(&format!("{base}/.well-known/oauth-authorization-server")).await;
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
