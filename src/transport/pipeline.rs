//! The life of one MCP request, top to bottom. Every client transport
//! (streamable HTTP, legacy SSE, and the root aggregated endpoint) goes
//! through these steps, in this order:
//!
//! 1. **Edge** (`edge::check`): `Host` and `Origin` (DNS rebinding, 403).
//! 2. **Resolve** ([`resolve`], [`resolve_root`]): the router matched the URL;
//!    the service it names becomes an [`Endpoint`] (404 if there is none).
//! 3. **Authenticate** (`authenticate`): with `proxy.auth`, a valid access
//!    token for this service with its scopes (401/403 with `WWW-Authenticate`),
//!    or a `serviceAuths` credential. The caller becomes one `Arc<Caller>`,
//!    carried unchanged to the backend's start.
//! 4. **Handler** (`streamable`, `sse`): media types, body, JSON-RPC envelope;
//!    takes a [`Client`] (endpoint + caller).
//! 5. **Session** ([`open_session`], or the session named by the request):
//!    bound to the caller; one person's sessions per service are limited.
//! 6. **Route** (`route::Routes::connect`, called by the session): authorize
//!    items (policy, aggregation), then deferral, sharing, or the person's
//!    own backend.
//! 7. **Backend**: the transport to the MCP server.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::{AppState, reply};
use crate::caller::Caller;
use crate::config::AggregateSettings;
use crate::jsonrpc::{RequestId, code};
use crate::service::Service;
use crate::session::{OpenError, Session};

/// The service a request is for, and which of its endpoints (`mcp` or `sse`,
/// for the resource metadata URL in a 401).
#[derive(Clone)]
pub struct Endpoint {
    pub service: Arc<Service>,
    pub kind: &'static str,
}

/// Step 2 for `/<service>/...`.
pub async fn resolve(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(service) = app.service(&name).cloned() else {
        return reply::unknown_service(&name);
    };
    let kind = endpoint_kind(&req);
    req.extensions_mut().insert(Endpoint { service, kind });
    next.run(req).await
}

/// Step 2 for `/mcp`, `/sse` and `/message`: the root aggregated endpoint
/// (its internal name is `mcp`, a name no service may take).
pub async fn resolve_root(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(service) = app.service(AggregateSettings::ROOT).cloned() else {
        return reply::unknown_service(AggregateSettings::ROOT);
    };
    let kind = endpoint_kind(&req);
    req.extensions_mut().insert(Endpoint { service, kind });
    next.run(req).await
}

fn endpoint_kind(req: &Request) -> &'static str {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or_default()
        .trim_end_matches('/');
    if path.ends_with("/sse") || path.ends_with("/message") {
        "sse"
    } else {
        "mcp"
    }
}

/// What every MCP handler is given: the service (step 2) and the verified
/// caller (step 3; `None` only on gateways without `proxy.auth`).
pub struct Client {
    pub service: Arc<Service>,
    pub caller: Option<Arc<Caller>>,
}

impl Client {
    /// The person sessions are bound to.
    pub fn owner(&self) -> Option<&crate::caller::UserId> {
        self.caller.as_deref().map(|c| &c.user)
    }
}

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Client, Response> {
        let Some(endpoint) = parts.extensions.get::<Endpoint>() else {
            // Every MCP route resolves its service first; a route without it
            // is a wiring mistake, refused rather than served unchecked.
            return Err(reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL_ERROR,
                "Internal error: this route has no service",
            ));
        };
        let caller = parts.extensions.get::<Arc<Caller>>().cloned();
        // Defence in depth behind `authenticate`: with authentication on,
        // nothing reaches a session or a backend without a verified caller.
        if app.auth.is_some() && caller.is_none() {
            return Err(reply::error(
                StatusCode::UNAUTHORIZED,
                code::INVALID_REQUEST,
                "Unauthorized: send an access token from this gateway (Authorization: Bearer ...)",
            ));
        }
        Ok(Client {
            service: endpoint.service.clone(),
            caller,
        })
    }
}

/// Step 5 for a new session, whichever transport asks: a place among the
/// person's sessions on this service, then the session and its route.
pub async fn open_session(
    app: &AppState,
    client: &Client,
    legacy: bool,
    request: Option<&RequestId>,
) -> Result<Arc<Session>, Response> {
    let svc = &client.service;
    // Held until the session is registered (or failed), so parallel opens
    // cannot overshoot the limit.
    let _place = match (&client.caller, &app.auth) {
        (Some(c), Some(_)) => {
            match app
                .sessions
                .reserve(&svc.name, &c.user, svc.max_sessions_per_user)
            {
                Ok(r) => Some(r),
                Err(open) => {
                    return Err(reply::error_for(
                        StatusCode::TOO_MANY_REQUESTS,
                        request,
                        code::LIMIT_REACHED,
                        &format!(
                            "you already have {open} sessions open on {}; the limit per person is {} (mcpServers.{}.maxSessionsPerUser). Close some, or let them time out, and try again",
                            svc.name, svc.max_sessions_per_user, svc.name
                        ),
                    ));
                }
            }
        }
        _ => None,
    };
    Session::open(
        svc.clone(),
        app.sessions.clone(),
        legacy,
        &app.routes,
        client.caller.clone(),
    )
    .await
    .map_err(|e| {
        let (status, code) = match e {
            OpenError::Limit { .. } => (StatusCode::SERVICE_UNAVAILABLE, code::LIMIT_REACHED),
            OpenError::Start { .. } => (StatusCode::BAD_GATEWAY, code::BACKEND_UNAVAILABLE),
        };
        tracing::warn!(service = %svc.name, "{e}");
        reply::error_for(status, request, code, &e.to_string())
    })
}
