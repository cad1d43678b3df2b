//! Edge checks for MCP endpoints: DNS-rebinding protection.
//!
//! A web page can make a browser send requests to a gateway on the user's own
//! machine. Browsers always send `Origin` on such requests, so an origin that is not
//! the gateway's own, a loopback one, or configured, is refused with 403. A gateway
//! whose public URL is on loopback also checks `Host`, which a rebinding attack
//! cannot forge.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::reply;
use crate::config::Settings;
use crate::jsonrpc::code;
use crate::util::is_loopback_host;

pub struct OriginPolicy {
    own: String,
    allowed: Vec<String>,
    any: bool,
    check_host: bool,
}

impl OriginPolicy {
    pub fn new(settings: &Settings) -> OriginPolicy {
        OriginPolicy {
            own: settings.base_url.origin().ascii_serialization(),
            allowed: settings
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: settings.allowed_origins.iter().any(|o| o == "*"),
            check_host: settings.base_url.host_str().is_some_and(is_loopback_host),
        }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.any || origin == self.own || self.allowed.contains(&origin) {
            return true;
        }
        url::Url::parse(&origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(is_loopback_host)
        })
    }

    fn host_ok(&self, host: Option<&str>) -> bool {
        if !self.check_host {
            return true;
        }
        let Some(host) = host else { return true };
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        is_loopback_host(name)
    }
}

pub async fn check(State(gw): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let policy = &gw.origins;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !policy.host_ok(host) {
        return reply::error(
            StatusCode::FORBIDDEN,
            code::INVALID_REQUEST,
            "Forbidden: the Host header does not name this gateway (DNS rebinding protection)",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| policy.allows(o));
        if !ok {
            return reply::error(
                StatusCode::FORBIDDEN,
                code::INVALID_REQUEST,
                "Forbidden: this Origin is not allowed to call the gateway; add it to proxy.allowedOrigins",
            );
        }
    }
    next.run(req).await
}
