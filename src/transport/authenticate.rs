//! The resource server: the bearer check in front of every MCP endpoint
//! (step 3 of the request path, see `pipeline`).
//!
//! Authentication (who is calling: a valid access token of ours) answers 401 with
//! `WWW-Authenticate: Bearer resource_metadata=..., scope=...` so clients can
//! discover how to get one; authorization (may this token be used here: audience
//! and scopes) answers 401 `invalid_token` for a token meant for another
//! resource and 403 `insufficient_scope` when scopes fall short (RFC 6750 §3.1).
//! The verified caller travels on as an `Arc<Caller>` request extension.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::pipeline::Endpoint;
use crate::auth::Audience;
use crate::auth::metadata::resource_metadata_url;
use crate::caller::{Caller, ClientId, PersonalTokens, UserId};
use crate::oauth::error::{ErrorCode, OAuthError};

pub async fn authenticate(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(auth) = app.auth.as_ref() else {
        return next.run(req).await;
    };
    // The router resolved the service (see `pipeline::resolve`); an unknown
    // one was answered 404 before this.
    let Some(endpoint) = req.extensions().get::<Endpoint>().cloned() else {
        return next.run(req).await;
    };
    let service = endpoint.service.name.to_string();
    let endpoint = endpoint.kind;
    let Some(required) = auth.required_scopes(&service) else {
        // A service the authorization server does not know: the handlers
        // refuse any request without a caller when authentication is on, so
        // this fails closed.
        return next.run(req).await;
    };
    let challenge = |error: Option<&OAuthError>| {
        let mut v = format!(
            "Bearer resource_metadata=\"{}\", scope=\"{}\"",
            resource_metadata_url(auth, &service, endpoint),
            required.join(" ")
        );
        if let Some(e) = error {
            v.push_str(&format!(
                ", error=\"{}\", error_description=\"{}\"",
                e.code.as_str(),
                e.description.replace(['"', '\\'], "'")
            ));
        }
        v
    };
    // Machine clients of this service (serviceAuths) first: a static bearer
    // token or basic auth. Both paths end in the same `Caller`, so the two
    // kinds of caller work side by side on one service.
    if let Some(svc) = auth.service(&service)
        && !svc.service_auths.is_empty()
        && let Some(caller) = service_auth(svc, &req)
    {
        tracing::debug!(service, user = caller.email.as_str(), "service auth");
        req.extensions_mut().insert(Arc::new(caller));
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let headers = req.headers();
    // A refused token leaves an audit line (budgeted per IP); a request with
    // no token at all is how every client discovers the authorization
    // server, so it leaves none.
    let refuse = |error: Option<OAuthError>, client: Option<&str>| {
        if let Some(e) = &error {
            auth.note_refused_token(peer, headers, &service, client, &e.description);
        }
        let header_value = challenge(error.as_ref());
        let mut resp = match error {
            Some(e) => e.into_response(),
            None => OAuthError::new(
                ErrorCode::InvalidToken,
                "authorization required: send an access token from this gateway (Authorization: Bearer ...)",
            )
            .into_response(),
        };
        if let Ok(v) = HeaderValue::from_str(&header_value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    };
    let Some(token) = bearer(&req) else {
        return refuse(None, None);
    };
    let claims = match auth.keys.verify(token) {
        Ok(c) => c,
        Err(why) => {
            return refuse(Some(OAuthError::new(ErrorCode::InvalidToken, why)), None);
        }
    };
    if auth.is_revoked(&claims.fam) {
        return refuse(
            Some(OAuthError::new(
                ErrorCode::InvalidToken,
                "the access token was revoked",
            )),
            Some(claims.client_id.as_str()),
        );
    }
    let for_here = claims.aud == auth.audience_claim(&Audience::Gateway)
        || claims.aud == auth.audience_claim(&Audience::Service(service.clone()));
    if !for_here {
        return refuse(
            Some(OAuthError::new(
                ErrorCode::InvalidToken,
                format!(
                    "the access token is for another resource; get one for {}",
                    auth.resource_url(&service)
                ),
            )),
            Some(claims.client_id.as_str()),
        );
    }
    if let Some(missing) = required
        .iter()
        .find(|s| !claims.scopes().any(|c| c == s.as_str()))
    {
        let e = OAuthError::new(
            ErrorCode::InsufficientScope,
            format!("the access token lacks the scope {missing:?} this service requires"),
        );
        let mut resp = refuse(Some(e), Some(claims.client_id.as_str()));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return resp;
    }
    let tokens: Arc<dyn PersonalTokens> = auth.clone();
    req.extensions_mut().insert(Arc::new(Caller {
        user: claims.sub.clone(),
        email: claims.email.clone(),
        client_id: claims.client_id.clone(),
        scopes: claims.scopes().map(String::from).collect(),
        groups: claims.groups.clone(),
        domain: claims.dom.clone(),
        service_identity: None,
        configured_token: None,
        tokens: Some(tokens),
    }));
    next.run(req).await
}

/// The bearer token of `Authorization: Bearer <token>` (scheme case-insensitive).
/// Tokens in the query string are not accepted (RFC 9700 §2.5).
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A caller matching one of the service's `serviceAuths`.
fn service_auth(svc: &crate::config::Service, req: &Request) -> Option<Caller> {
    use crate::config::ServiceAuthConfig;
    let header = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    let principal = |user: &str, user_token: &Option<String>| Caller {
        user: UserId::new(format!("service:{user}")),
        email: user.to_string(),
        client_id: ClientId::new("service-auth"),
        scopes: svc.required_scopes.clone(),
        groups: Vec::new(),
        domain: None,
        service_identity: Some(user.to_string()),
        configured_token: user_token.clone(),
        tokens: None,
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        let presented = crate::util::sha256_hex(value.as_bytes());
        // Every configured token is compared, in constant time, whatever matches.
        let mut found = None;
        for a in &svc.service_auths {
            if let ServiceAuthConfig::Bearer {
                tokens,
                user,
                user_token,
            } = a
            {
                for t in tokens {
                    if crate::util::secure_eq(&crate::util::sha256_hex(t.as_bytes()), &presented)
                        && found.is_none()
                    {
                        found = Some(principal(user, user_token));
                    }
                }
            }
        }
        return found;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (name, password) = text.split_once(':')?;
        let presented = crate::util::sha256_hex(password.as_bytes());
        let mut found = None;
        for a in &svc.service_auths {
            if let ServiceAuthConfig::Basic {
                username,
                password: expected,
                user,
                user_token,
            } = a
            {
                let ok = crate::util::secure_eq(username, name)
                    & crate::util::secure_eq(
                        &crate::util::sha256_hex(expected.as_bytes()),
                        &presented,
                    );
                if ok && found.is_none() {
                    found = Some(principal(user.as_deref().unwrap_or(username), user_token));
                }
            }
        }
        return found;
    }
    None
}
