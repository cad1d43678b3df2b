//! The identity provider's answer (`/oauth/callback`): a refusal goes back to
//! the client as `access_denied`; a code is exchanged (by the provider module)
//! for the person's identity, then `sign_in` finishes. The request is single
//! use from the moment the answer arrives.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::pending::load_pending;
use super::respond::{redirect_error, refusal_page};
use super::sign_in::{callback_url, signed_in_now};
use crate::auth::records::PendingAuthorization;
use crate::auth::{Auth, Login};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::web;

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn callback(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let (request, pending) = match load_pending(&auth, &headers, q.state.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Login::Upstream(provider) = &auth.login else {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No identity provider here.",
        );
    };
    if let Some(error) = q.error.as_deref() {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        tracing::info!(
            error = error.chars().take(64).collect::<String>(),
            "the identity provider refused the sign-in"
        );
        return redirect_error(
            &auth.issuer,
            &pending.redirect_uri,
            pending.state.as_deref(),
            OAuthError::new(
                ErrorCode::AccessDenied,
                "sign-in was cancelled or refused at the identity provider",
            ),
        );
    }
    let (Some(code), Some(upstream)) = (q.code.as_deref(), pending.upstream.clone()) else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider's answer has no code. Connect again from your application.",
        );
    };
    let Ok(upstream) = serde_json::from_value(upstream) else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in cannot be finished. Connect again from your application.",
        );
    };
    // The request is single-use from here: a replayed callback finds nothing.
    let _ = auth
        .store
        .delete::<PendingAuthorization>(&request.hash().to_hex())
        .await;
    let identity = match provider.finish(&callback_url(&auth), code, upstream).await {
        Ok(i) => i,
        Err(e) => {
            let code = e.oauth_code();
            tracing::info!(
                target: "audit",
                client_id = pending.client_id.as_str(),
                error = code.as_str(),
                reason = %e,
                "sign-in refused: the identity provider's answer"
            );
            let (status, title) = match code {
                ErrorCode::AccessDenied => (StatusCode::FORBIDDEN, "Access denied"),
                ErrorCode::TemporarilyUnavailable => {
                    (StatusCode::BAD_GATEWAY, "Sign-in unavailable")
                }
                _ => (StatusCode::BAD_GATEWAY, "Sign-in failed"),
            };
            return refusal_page(
                &auth.issuer,
                &pending.redirect_uri,
                pending.state.as_deref(),
                status,
                title,
                &format!(
                    "{e}. Your application is told; connect again from it once this is fixed."
                ),
                OAuthError::new(code, format!("sign-in failed: {e}")),
            );
        }
    };
    signed_in_now(&auth, &request, pending, identity).await
}
