//! The browser's two cookies: the binding cookie, which ties a request in
//! progress to the browser that started it, and the signed-in session cookie;
//! and `/logout`, which ends the session.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::auth::Auth;
use crate::auth::records::BrowserSession;
use crate::auth::token::{Browser, Token};
use crate::web;

/// Ties requests in progress to the browser that started them. Never replaced
/// at sign-in, so two sign-ins in flight in one browser do not break each other.
const BROWSER_COOKIE: &str = "mcpgate-browser";
/// The signed-in session; always a new value at sign-in (no session fixation).
pub const SESSION_COOKIE: &str = "mcpgate-session";

/// This browser's binding (the hash of its cookie), and the `Set-Cookie` to send
/// when it had none yet.
pub fn browser_binding(auth: &Auth, headers: &HeaderMap) -> (String, Option<String>) {
    match browser_cookie(auth, headers) {
        Some(b) => (b, None),
        None => {
            let b = Token::<Browser>::generate();
            let cookie = auth.cookie(BROWSER_COOKIE, b.reveal(), auth.settings.login_ttl);
            (b.hash().to_hex(), Some(cookie))
        }
    }
}

/// The hash of this browser's binding cookie, if it sent a well-formed one.
pub fn browser_cookie(auth: &Auth, headers: &HeaderMap) -> Option<String> {
    cookie_hash(auth, headers, BROWSER_COOKIE)
}

fn cookie_hash(auth: &Auth, headers: &HeaderMap, cookie: &str) -> Option<String> {
    cookie_value(headers, &auth.cookie_name(cookie))
        .and_then(|v| Token::<Browser>::parse(v).ok())
        .map(|t| t.hash().to_hex())
}

/// The value of the first cookie named `name` in the request's `Cookie` headers.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in session of this browser (its store key and record).
pub async fn signed_in(auth: &Auth, headers: &HeaderMap) -> Option<(String, BrowserSession)> {
    let key = cookie_hash(auth, headers, SESSION_COOKIE)?;
    let session = auth
        .store
        .get::<BrowserSession>(&key)
        .await
        .ok()
        .flatten()?;
    Some((key, session))
}

/// Sign out of the gateway in this browser.
pub async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some((key, _)) = signed_in(&auth, &headers).await {
        let _ = auth.store.delete::<BrowserSession>(&key).await;
    }
    let mut resp = web::page(
        StatusCode::OK,
        "Signed out",
        "<h1>Signed out</h1><p>You are signed out of the gateway in this browser.</p>",
    );
    if let Ok(v) = HeaderValue::from_str(&auth.cookie(SESSION_COOKIE, "", Duration::ZERO)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_is_found_among_several_headers_and_pairs() {
        let h = headers(&["a=1; mcpgate-browser=xyz", "b=2"]);
        assert_eq!(cookie_value(&h, "mcpgate-browser"), Some("xyz"));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn names_match_exactly_and_the_first_wins() {
        let h = headers(&[
            "__Host-mcpgate-session=secure; mcpgate-session=plain; mcpgate-session=later",
        ]);
        assert_eq!(cookie_value(&h, "mcpgate-session"), Some("plain"));
        assert_eq!(cookie_value(&h, "__Host-mcpgate-session"), Some("secure"));
        assert_eq!(cookie_value(&h, "session"), None);
    }

    #[test]
    fn no_cookie_header_no_value() {
        assert_eq!(cookie_value(&HeaderMap::new(), "mcpgate-browser"), None);
    }
}
