//! The start of a request: `/authorize` (checked in two stages, see the module
//! docs of `flow`), and `/my/login`, the same sign-in for the gateway's own
//! pages without an OAuth client. A browser already signed in (and still
//! allowed) skips the sign-in.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::browser::{browser_binding, signed_in};
use super::code::after_sign_in;
use super::request::{self, AuthorizeQuery, Prompt};
use super::respond::{found, redirect_error};
use super::sign_in::begin_sign_in;
use crate::auth::records::PendingAuthorization;
use crate::auth::token::{LoginState, Token};
use crate::auth::{Audience, Auth};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::web;

pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    query: Result<Query<AuthorizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                &format!(
                    "The application sent a malformed request ({e}). Try connecting again; if it keeps happening, report it to the application's developers."
                ),
            );
        }
    };
    // Stage 1: client and redirect URI, errors shown here.
    let Some(client_id) = q.client_id.as_deref() else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            "The request has no client_id.",
        );
    };
    let client = match auth.client(client_id).await {
        Ok(c) => c,
        Err(e) => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                &format!(
                    "This gateway does not know the application that sent you here: {}",
                    e.description
                ),
            );
        }
    };
    let redirect_uri = match request::redirect_uri(&client.redirect_uris, q.redirect_uri.as_deref())
    {
        Ok(r) => r,
        Err(e) => {
            return web::error_page(StatusCode::BAD_REQUEST, e.title(), &e.to_string());
        }
    };
    // Stage 2: errors go back to the client.
    let state = q.state.clone();
    let fail =
        |error: OAuthError| redirect_error(&auth.issuer, &redirect_uri, state.as_deref(), error);
    let challenge = match request::code_challenge(&q) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let audience = match q.resource.as_deref() {
        Some(r) => match auth.parse_resource(r) {
            Some(a) => a,
            None => {
                return fail(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource {:?} is not served by this gateway; use a service URL such as {}",
                        r.chars().take(200).collect::<String>(),
                        auth.resource_url("<service>")
                    ),
                ));
            }
        },
        None if auth.settings.require_resource => {
            return fail(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource is required (RFC 8707): name the MCP server URL the token is for",
            ));
        }
        None => Audience::Gateway,
    };
    let scope = auth.grant_scopes(q.scope.as_deref(), &audience);
    let redirect_uri_sent = q.redirect_uri.is_some();

    // The browser: its existing cookie, or a new one.
    let (browser, new_cookie) = browser_binding(&auth, &headers);
    let request = Token::<LoginState>::generate();
    let pending = PendingAuthorization {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        redirect_uri_sent,
        state,
        code_challenge: challenge,
        scope,
        audience,
        browser: browser.clone(),
        csrf: String::new(),
        upstream: None,
        self_service: false,
    };
    let prompt = Prompt::parse(q.prompt.as_deref());
    let mut resp = 'next: {
        if !prompt.login
            && let Some((_, session)) = signed_in(&auth, &headers).await
            && auth.still_allowed(&session.identity).is_ok()
        {
            break 'next after_sign_in(&auth, &request, pending, &session, prompt.consent).await;
        }
        begin_sign_in(&auth, &request, pending).await
    };
    set_cookie(&mut resp, new_cookie);
    resp
}

/// `/my/login?next=/my/tokens`: sign in to the gateway itself (for the `/my`
/// pages), without an OAuth client. The same sign-in as `/authorize`, then
/// straight back to `next`.
pub async fn my_sign_in(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let target = auth.url(&request::self_service_next(q.next));
    if signed_in(&auth, &headers).await.is_some() {
        return found(&target);
    }
    let (browser, new_cookie) = browser_binding(&auth, &headers);
    let pending = PendingAuthorization {
        client_id: crate::caller::ClientId::new("mcpgate"),
        client_name: Some("mcpgate".into()),
        redirect_uri: target,
        redirect_uri_sent: false,
        state: None,
        code_challenge: String::new(),
        scope: Vec::new(),
        audience: Audience::Gateway,
        browser,
        csrf: String::new(),
        upstream: None,
        self_service: true,
    };
    let request = Token::<LoginState>::generate();
    let mut resp = begin_sign_in(&auth, &request, pending).await;
    set_cookie(&mut resp, new_cookie);
    resp
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The new binding cookie, when the browser had none.
fn set_cookie(resp: &mut Response, cookie: Option<String>) {
    if let Some(c) = cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}
