//! Client-facing HTTP: the router, the order of its layers, and the state
//! the handlers share.
//!
//! The life of one MCP request is told step by step in [`pipeline`]: edge
//! checks, resolving the service, authentication, the handler, the session,
//! the route and the backend.
//!
//! Around the MCP endpoints: **CORS** is outermost, so a browser's preflight is
//! answered before anything else can refuse it, and every answer (errors
//! included) carries CORS headers. `ops` routes (`/health`, `/ready`) skip the
//! edge and authentication: probes carry no Origin. The authorization server's
//! own routes (`auth::Auth::routes`: well-known documents, `/authorize`,
//! `/token`, `/register`, `/revoke`, sign-in and consent pages) skip them too:
//! they are how a client gets a token in the first place. Their CORS is open to
//! any origin (no cookies are sent cross-origin), so browser-based clients can
//! discover and register.

// Handlers return early with a ready `Response` as their error: boxing it would
// only add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod authenticate;
mod edge;
mod health;
pub mod pipeline;
mod reply;
mod sse;
mod stateless;
mod streamable;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Auth;
use crate::config::{ServiceName, Settings};
use crate::route::Routes;
use crate::service::Service;
use crate::session::Registry;
use tokio_util::sync::CancellationToken;

pub use edge::OriginPolicy;

/// What the handlers share: the settings, the services, the open sessions,
/// the routes to backends, and the authorization server. Built by `gateway`.
pub struct AppState {
    pub settings: Settings,
    pub services: std::collections::HashMap<ServiceName, Arc<Service>>,
    pub sessions: Arc<Registry>,
    pub routes: Arc<Routes>,
    /// Which browser origins and hosts may call the MCP endpoints.
    pub origins: OriginPolicy,
    /// The authorization server, when `proxy.auth` is configured.
    pub auth: Option<Arc<Auth>>,
    pub shutdown: CancellationToken,
    /// Backend sessions and held calls for MCP 2026-07-28 clients.
    pub bridge: crate::stateless::Bridge,
}

impl AppState {
    /// The service (or aggregated endpoint) served under this name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        let name = if name == crate::config::AggregateSettings::ROOT {
            ServiceName::root()
        } else {
            ServiceName::parse(name).ok()?
        };
        self.services.get(&name)
    }

    /// Public URL of a path on this gateway (base path included).
    pub fn url(&self, path: &str) -> String {
        let mut base = self.settings.base_url.clone();
        base.set_path(&format!("{}{}", self.settings.base_path(), path));
        base.to_string()
    }
}

pub fn router(gw: Arc<AppState>) -> Router {
    let streamable_routes = || {
        get(streamable::get)
            .post(streamable::post)
            .delete(streamable::delete)
    };
    // Layers run outermost-last: edge (step 1), resolve (2), authenticate (3).
    let authenticate = || from_fn_with_state(gw.clone(), authenticate::authenticate);
    let services = Router::new()
        .route("/{service}/mcp", streamable_routes())
        .route("/{service}/mcp/", streamable_routes())
        .route("/{service}/sse", get(sse::connect))
        .route("/{service}/sse/", get(sse::connect))
        .route("/{service}/message", post(sse::message))
        .route_layer(authenticate())
        .route_layer(from_fn_with_state(gw.clone(), pipeline::resolve));
    // The root aggregated endpoint, when it is on (its internal name is `mcp`).
    let root = Router::new()
        .route("/mcp", streamable_routes())
        .route("/mcp/", streamable_routes())
        .route("/sse", get(sse::connect))
        .route("/message", post(sse::message))
        .route_layer(authenticate())
        .route_layer(from_fn_with_state(gw.clone(), pipeline::resolve_root));
    let mcp = services
        .merge(root)
        .route_layer(from_fn_with_state(gw.clone(), edge::check));
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

fn cors(gw: &Arc<AppState>) -> CorsLayer {
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
            header("mcp-method"),
            header("mcp-name"),
            header("last-event-id"),
        ])
        .expose_headers([header("mcp-session-id"), header("www-authenticate")])
        .max_age(Duration::from_secs(3600))
}
