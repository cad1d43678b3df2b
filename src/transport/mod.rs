//! Client-facing HTTP: the router, and the order of its layers.
//!
//! The request path, top to bottom:
//!
//! 1. **CORS** (outermost), so a browser's preflight is answered before anything
//!    else can refuse it, and every answer (errors included) carries CORS headers.
//! 2. **Edge checks** on MCP endpoints: `Host` and `Origin` (DNS rebinding, 403).
//! 3. **Authentication, then authorization** (`auth::resource`), when `proxy.auth`
//!    is set: a valid access token of this gateway (401 + `WWW-Authenticate`
//!    otherwise), meant for this service (401 `invalid_token`), with the scopes the
//!    service requires (403 `insufficient_scope`). The caller becomes a
//!    `Principal`, which sessions are bound to. Without `proxy.auth` the gateway
//!    refuses to listen beyond loopback (see `config`).
//! 4. **Handlers** (`streamable`, `sse`): media types (415/406), body limit (413),
//!    JSON-RPC parsing (400), then session lookup (400/404) and the backend.
//!
//! `ops` routes (`/health`, `/ready`) skip steps 2-3: probes carry no Origin.
//! The authorization server's own routes (`auth::Auth::routes`: well-known
//! documents, `/authorize`, `/token`, `/register`, `/revoke`, sign-in and consent
//! pages) skip them too: they are how a client gets a token in the first place.
//! Their CORS is open to any origin (no cookies are sent cross-origin), so
//! browser-based clients can discover and register.

// Handlers return early with a ready `Response` as their error: boxing it would
// only add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod edge;
mod health;
mod reply;
mod root;
mod sse;
mod streamable;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::gateway::Gateway;

pub use edge::OriginPolicy;

pub fn router(gw: Arc<Gateway>) -> Router {
    let streamable_routes = || {
        get(streamable::get)
            .post(streamable::post)
            .delete(streamable::delete)
    };
    let mcp = Router::new()
        .route("/{service}/mcp", streamable_routes())
        .route("/{service}/mcp/", streamable_routes())
        .route("/{service}/sse", get(sse::connect))
        .route("/{service}/sse/", get(sse::connect))
        .route("/{service}/message", post(sse::message))
        // The root aggregated endpoint, when it is on (its internal name is `mcp`).
        .route("/mcp", root::streamable())
        .route("/mcp/", root::streamable())
        .route("/sse", get(root::sse))
        .route("/message", post(root::message))
        // Layers run bottom-up: edge (step 2) first, then authentication (step 3).
        .layer(from_fn_with_state(
            gw.clone(),
            crate::auth::resource::authenticate,
        ))
        .layer(from_fn_with_state(gw.clone(), edge::check));
    let ops = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready));
    let mut app = mcp.merge(ops);
    if let Some(auth) = &gw.auth {
        app = app.merge(auth.routes());
    }
    let app = app.fallback(reply::not_found);
    let base = gw.settings.base_path().to_string();
    let app = if base.is_empty() {
        app
    } else {
        let mut root = Router::new().nest(&base, app);
        if let Some(auth) = &gw.auth {
            root = root.merge(auth.root_routes());
        }
        root.fallback(reply::not_found)
    };
    app.layer(cors(&gw)).with_state(gw)
}

/// Authorization-server endpoints that browser-based clients call cross-origin
/// (metadata, registration, token, revocation). They use no cookies, so any
/// origin may read their answers.
fn is_public_auth_path(path: &str) -> bool {
    path.contains("/.well-known/")
        || ["/token", "/register", "/revoke"]
            .iter()
            .any(|p| path.ends_with(p))
}

fn cors(gw: &Arc<Gateway>) -> CorsLayer {
    let gw_for_cors = gw.clone();
    let header = |s: &'static str| HeaderName::from_static(s);
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, parts: &axum::http::request::Parts| {
                is_public_auth_path(parts.uri.path())
                    || origin.to_str().is_ok_and(|o| gw_for_cors.origins.allows(o))
            },
        ))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header("content-type"),
            header("accept"),
            header("authorization"),
            header("mcp-session-id"),
            header("mcp-protocol-version"),
            header("last-event-id"),
        ])
        .expose_headers([header("mcp-session-id"), header("www-authenticate")])
        .max_age(Duration::from_secs(3600))
}
