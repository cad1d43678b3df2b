//! Authorization server and protected resource metadata, end to end through
//! the real binary: served at every place clients look, also under a base path.

mod common;

use common::oauth::*;
use common::{Mcp, gateway_at};
use serde_json::{Value, json};

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
    let jwks: Value = common::get_json(&format!("{base}/.well-known/jwks.json")).await;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0]["kid"].is_string());
    let root: Value =
        common::get_json(&format!("{base}/.well-known/oauth-protected-resource")).await;
    assert_eq!(root["resource"], base.as_str());
    // Legacy SSE endpoint has its own resource document.
    let sse: Value = common::get_json(&format!(
        "{base}/.well-known/oauth-protected-resource/b/sse"
    ))
    .await;
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
