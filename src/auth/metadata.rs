//! The well-known documents clients discover the gateway with.
//!
//! Clients look in several places (CLIENTS.md): protected-resource metadata
//! path-inserted then at the root (RFC 9728); authorization-server metadata at
//! `/.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`,
//! root and path-inserted forms (RFC 8414 §3.1). All of them are served, under
//! the base path and (see [`root_routes`]) at the origin.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::Auth;

pub fn routes() -> Router<Arc<Auth>> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(server))
        .route("/.well-known/openid-configuration", get(server))
        .route("/.well-known/oauth-protected-resource", get(root_resource))
        .route(
            "/.well-known/oauth-protected-resource/{service}/{endpoint}",
            get(resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/{endpoint}",
            get(root_aggregate),
        )
        .route("/.well-known/jwks.json", get(jwks))
}

/// Path-inserted forms at the origin, for a gateway under a base path.
pub fn root_routes(base_path: &str) -> Router<Arc<Auth>> {
    Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{base_path}"),
            get(server),
        )
        .route(
            &format!("/.well-known/openid-configuration{base_path}"),
            get(server),
        )
        .route("/.well-known/oauth-authorization-server", get(server))
        .route(
            &format!("/.well-known/oauth-protected-resource{base_path}"),
            get(root_resource),
        )
        .route(
            &format!("/.well-known/oauth-protected-resource{base_path}/{{service}}/{{endpoint}}"),
            get(resource),
        )
        .route(
            &format!("/.well-known/oauth-protected-resource{base_path}/{{endpoint}}"),
            get(root_aggregate),
        )
}

fn document(body: Value) -> Response {
    let mut resp = Json(body).into_response();
    // Public and rarely changing; a short cache spares clients a round trip.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// RFC 8414 authorization server metadata (also served as OpenID discovery,
/// which some clients probe first; no ID tokens are issued, so no OIDC-only fields).
pub async fn server(State(auth): State<Arc<Auth>>) -> Response {
    let mut doc = json!({
        "issuer": auth.issuer,
        "authorization_endpoint": auth.url("/authorize"),
        "token_endpoint": auth.url("/token"),
        "revocation_endpoint": auth.url("/revoke"),
        "jwks_uri": auth.url("/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": auth.scopes_supported(),
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": auth.settings.cimd_enabled,
    });
    if auth.settings.registration_open {
        doc["registration_endpoint"] = json!(auth.url("/register"));
    }
    document(doc)
}

/// RFC 9728 metadata of one service's MCP endpoint.
async fn resource(
    State(auth): State<Arc<Auth>>,
    Path((service, endpoint)): Path<(String, String)>,
) -> Response {
    let Some(scopes) = auth.required_scopes(&service) else {
        return (StatusCode::NOT_FOUND, "no such service").into_response();
    };
    if !matches!(endpoint.as_str(), "mcp" | "sse") {
        return (StatusCode::NOT_FOUND, "no such resource").into_response();
    }
    document(json!({
        "resource": auth.url(&crate::config::endpoint_path(&service, &endpoint)),
        "authorization_servers": [auth.issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": service,
    }))
}

/// RFC 9728 metadata of the aggregated endpoint `/mcp` (`/sse`).
async fn root_aggregate(state: State<Arc<Auth>>, Path(endpoint): Path<String>) -> Response {
    let root = crate::config::AggregateSettings::ROOT.to_string();
    resource(state, Path((root, endpoint))).await
}

/// RFC 9728 metadata of the gateway as a whole (tokens without a `resource`).
async fn root_resource(State(auth): State<Arc<Auth>>) -> Response {
    document(json!({
        "resource": auth.issuer,
        "authorization_servers": [auth.issuer],
        "scopes_supported": auth.scopes_supported(),
        "bearer_methods_supported": ["header"],
    }))
}

async fn jwks(State(auth): State<Arc<Auth>>) -> Response {
    document(serde_json::to_value(auth.keys.jwks()).unwrap_or_else(|_| json!({"keys": []})))
}

/// Where a service's protected-resource metadata is, for `WWW-Authenticate`.
/// Under the base path, which a reverse proxy is sure to route to the gateway.
pub fn resource_metadata_url(auth: &Auth, service: &str, endpoint: &str) -> String {
    auth.url(&format!(
        "/.well-known/oauth-protected-resource{}",
        crate::config::endpoint_path(service, endpoint)
    ))
}
