//! The end of the flow, for a signed-in person: straight to the client when
//! they already consented to this client for these scopes and this audience,
//! else to the consent page; and the authorization code itself, stored as a
//! [`CodeGrant`] and sent back on the redirect URI.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::Response;

use super::pending::save_pending;
use super::respond::{found, redirect_error};
use crate::auth::records::{BrowserSession, CodeGrant, Consent, PendingAuthorization};
use crate::auth::token::{AuthorizationCode, LoginState, Token};
use crate::auth::{Audience, Auth, FamilyId};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::{self, Outcome};
use crate::web;

/// Authorization codes are single use and short-lived (RFC 6749 §4.1.2: at most 10 min).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Signed in: straight to the client when this person already consented to this
/// client for these scopes, otherwise to the consent page.
pub async fn after_sign_in(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    pending: PendingAuthorization,
    session: &BrowserSession,
    force_consent: bool,
) -> Response {
    if pending.self_service {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        return found(&pending.redirect_uri);
    }
    if !force_consent
        && let Ok(Some(consent)) = auth
            .store
            .get::<Consent>(&Consent::key(&session.user, &pending.client_id))
            .await
        && pending.scope.iter().all(|s| consent.scope.contains(s))
        && (consent.audience == Audience::Gateway || consent.audience == pending.audience)
    {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        return issue_code(auth, &pending, session).await;
    }
    if let Err(r) = save_pending(auth, request, &pending).await {
        return r;
    }
    found(&auth.url(&format!("/consent?request={}", request.reveal())))
}

pub async fn issue_code(
    auth: &Auth,
    pending: &PendingAuthorization,
    session: &BrowserSession,
) -> Response {
    let code = Token::<AuthorizationCode>::generate();
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_sent: pending.redirect_uri_sent,
        code_challenge: pending.code_challenge.clone(),
        scope: pending.scope.clone(),
        audience: pending.audience.clone(),
        user: session.user.clone(),
        identity: session.identity.clone(),
        family: FamilyId::generate(),
    };
    if let Err(e) = auth
        .store
        .put(
            &code.hash().to_hex(),
            &grant,
            Some(SystemTime::now() + CODE_TTL),
        )
        .await
    {
        tracing::error!("cannot store an authorization code: {e}");
        return redirect_error(
            &auth.issuer,
            &pending.redirect_uri,
            pending.state.as_deref(),
            OAuthError::new(ErrorCode::ServerError, "the gateway's store is unavailable"),
        );
    }
    tracing::info!(
        user = session.user.as_str(),
        client_id = pending.client_id.as_str(),
        "authorization code issued"
    );
    match redirect::build(
        &pending.redirect_uri,
        Outcome::Code {
            code: code.reveal(),
        },
        pending.state.as_deref(),
        &auth.issuer,
    ) {
        Some(url) => found(url.as_str()),
        None => web::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        ),
    }
}
