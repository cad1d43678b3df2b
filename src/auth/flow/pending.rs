//! A request in progress in the store ([`PendingAuthorization`]): saved under
//! the hash of its `request` token (which travels in URLs and forms), loaded
//! only by the browser that started it; and the CSRF value its forms carry.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::browser::browser_cookie;
use crate::auth::Auth;
use crate::auth::records::PendingAuthorization;
use crate::auth::token::{Csrf, LoginState, Token};
use crate::util::secure_eq;
use crate::web;

/// How long a person has to sign in and consent.
const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    pub(super) request: Option<String>,
}

pub async fn save_pending(
    auth: &Auth,
    request: &Token<LoginState>,
    pending: &PendingAuthorization,
) -> Result<(), Response> {
    auth.store
        .put(
            &request.hash().to_hex(),
            pending,
            Some(SystemTime::now() + REQUEST_TTL),
        )
        .await
        .map_err(|e| {
            tracing::error!("cannot store an authorization request: {e}");
            web::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The gateway's store is unavailable; try again shortly.",
            )
        })
}

/// The request a page or form refers to, if it exists and belongs to this browser.
pub async fn load_pending(
    auth: &Auth,
    headers: &HeaderMap,
    request: Option<&str>,
) -> Result<(Token<LoginState>, PendingAuthorization), Response> {
    let expired = || {
        web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in link has expired or was already used. Go back to your application and connect again.",
        )
    };
    let request = request
        .and_then(|r| Token::<LoginState>::parse(r).ok())
        .ok_or_else(expired)?;
    let pending = auth
        .store
        .get::<PendingAuthorization>(&request.hash().to_hex())
        .await
        .ok()
        .flatten()
        .ok_or_else(expired)?;
    match browser_cookie(auth, headers) {
        Some(b) if secure_eq(&b, &pending.browser) => Ok((request, pending)),
        _ => Err(web::error_page(
            StatusCode::FORBIDDEN,
            "Wrong browser",
            "This sign-in was started in another browser (or your cookies were cleared). Connect again from your application in this browser.",
        )),
    }
}

/// A new CSRF value for the form about to be shown; the request keeps its hash
/// (save it before showing the form).
pub fn new_csrf(pending: &mut PendingAuthorization) -> Token<Csrf> {
    let csrf = Token::<Csrf>::generate();
    pending.csrf = csrf.hash().to_hex();
    csrf
}

/// Whether a form's CSRF value is the one its request expects.
fn csrf_matches(expected_hash: &str, presented: Option<&str>) -> bool {
    presented
        .and_then(|c| Token::<Csrf>::parse(c).ok())
        .is_some_and(|c| !expected_hash.is_empty() && secure_eq(&c.hash().to_hex(), expected_hash))
}

/// A form's CSRF value checked, or the page that says it is out of date.
pub fn check_csrf(pending: &PendingAuthorization, presented: Option<&str>) -> Result<(), Response> {
    if csrf_matches(&pending.csrf, presented) {
        Ok(())
    } else {
        // Only a browser holding this request gets here: no flood to fear.
        tracing::warn!(
            target: "audit",
            client_id = pending.client_id.as_str(),
            "a sign-in form's CSRF value was refused"
        );
        Err(web::error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is out of date or did not come from this gateway (CSRF check failed). Reload the page and try again.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_value_of_the_form_matches_its_hash() {
        let csrf = Token::<Csrf>::generate();
        let hash = csrf.hash().to_hex();
        assert!(csrf_matches(&hash, Some(csrf.reveal())));
        let other = Token::<Csrf>::generate();
        assert!(!csrf_matches(&hash, Some(other.reveal())));
        assert!(!csrf_matches(&hash, None));
        assert!(!csrf_matches(&hash, Some("not a token")));
    }

    #[test]
    fn a_request_without_a_csrf_value_accepts_no_form() {
        // Before any form was shown the request holds no hash: nothing matches.
        let csrf = Token::<Csrf>::generate();
        assert!(!csrf_matches("", Some(csrf.reveal())));
    }

    #[test]
    fn the_hash_is_what_the_request_keeps() {
        let csrf = Token::<Csrf>::generate();
        assert_ne!(csrf.hash().to_hex(), csrf.reveal());
        assert!(!csrf_matches(csrf.reveal(), Some(csrf.reveal())));
    }
}
