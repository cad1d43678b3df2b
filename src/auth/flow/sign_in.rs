//! Sign-in, begun and finished: a request not yet signed in goes to the
//! password form or to the identity provider; a person who just proved who they
//! are is checked against the access policy and gets a new session cookie
//! (never the pre-login one: no session fixation), then goes on to consent.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::browser::SESSION_COOKIE;
use super::code::after_sign_in;
use super::pending::save_pending;
use super::respond::{found, refusal_page};
use crate::auth::idp::Identity;
use crate::auth::records::{BrowserSession, PendingAuthorization};
use crate::auth::token::{Browser, LoginState, Token};
use crate::auth::{Auth, Login};
use crate::caller::UserId;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::util::now_unix;
use crate::web;

/// Not signed in: to the sign-in form, or to the identity provider.
pub async fn begin_sign_in(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    mut pending: PendingAuthorization,
) -> Response {
    match &auth.login {
        Login::Local(_) => {
            if let Err(r) = save_pending(auth, request, &pending).await {
                return r;
            }
            found(&auth.url(&format!("/login?request={}", request.reveal())))
        }
        Login::Upstream(provider) => {
            let (url, upstream) = match provider.start(&callback_url(auth), request.reveal()) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("cannot start sign-in at the identity provider: {e}");
                    return refusal_page(
                        &auth.issuer,
                        &pending.redirect_uri,
                        pending.state.as_deref(),
                        StatusCode::BAD_GATEWAY,
                        "Sign-in unavailable",
                        &format!("The identity provider cannot be reached: {e}"),
                        OAuthError::new(
                            ErrorCode::TemporarilyUnavailable,
                            "the identity provider cannot be reached; try again later",
                        ),
                    );
                }
            };
            pending.upstream = serde_json::to_value(&upstream).ok();
            if let Err(r) = save_pending(auth, request, &pending).await {
                return r;
            }
            found(url.as_str())
        }
    }
}

pub fn callback_url(auth: &Auth) -> String {
    auth.url("/oauth/callback")
}

/// A person just proved who they are: check the access policy, start a browser
/// session under a new cookie (never the pre-login one: session fixation), go on.
pub async fn signed_in_now(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    pending: PendingAuthorization,
    identity: Identity,
) -> Response {
    if let Err(why) = auth.still_allowed(&identity) {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        tracing::info!(
            target: "audit",
            email = identity.email.as_str(),
            provider = identity.provider.as_str(),
            client_id = pending.client_id.as_str(),
            reason = %why,
            "sign-in refused by the access policy"
        );
        return refusal_page(
            &auth.issuer,
            &pending.redirect_uri,
            pending.state.as_deref(),
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!(
                "{} is signed in, but {why}. Ask the gateway's administrator for access.",
                identity.email
            ),
            OAuthError::new(
                ErrorCode::AccessDenied,
                format!("{} may not use this gateway: {why}", identity.email),
            ),
        );
    }
    let session = BrowserSession {
        user: UserId::new(format!("{}:{}", identity.provider, identity.subject)),
        identity,
        signed_in_at: now_unix(),
        csrf: None,
    };
    let token = Token::<Browser>::generate();
    if let Err(e) = auth
        .store
        .put(
            &token.hash().to_hex(),
            &session,
            Some(SystemTime::now() + auth.settings.login_ttl),
        )
        .await
    {
        tracing::error!("cannot store a browser session: {e}");
        return web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in failed",
            "The gateway's store is unavailable; try again shortly.",
        );
    }
    tracing::info!(user = session.user.as_str(), "signed in");
    let mut resp = after_sign_in(auth, request, pending, &session, false).await;
    if let Ok(v) =
        HeaderValue::from_str(&auth.cookie(SESSION_COOKIE, token.reveal(), auth.settings.login_ttl))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[allow(dead_code)]
fn _assert_send(auth: Arc<Auth>, p: crate::auth::idp::PendingLogin) {
    fn is_send<T: Send>(_: T) {}
    if let Login::Upstream(provider) = &auth.login {
        is_send(provider.finish("", "", p));
    }
}
