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
use super::respond::redirect_error;
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
            tracing::warn!("sign-in at the identity provider failed: {e}");
            return web::error_page(
                StatusCode::FORBIDDEN,
                "Sign-in failed",
                &format!("{e}. Connect again from your application."),
            );
        }
    };
    signed_in_now(&auth, &request, pending, identity).await
}
