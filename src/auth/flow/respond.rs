//! How the flow answers a browser once the redirect URI is trusted: a 302
//! (`found`), an OAuth error sent back on the client's redirect URI
//! (`redirect_error`), and the redirect's host as the consent page names it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::oauth::error::OAuthError;
use crate::oauth::redirect::{self, Outcome};
use crate::web;

/// An OAuth error back to the client at `target` (its checked redirect URI),
/// with `state` and `iss`; a page when `target` cannot be built on.
pub fn redirect_error(
    issuer: &str,
    target: &str,
    state: Option<&str>,
    error: OAuthError,
) -> Response {
    match redirect::build(target, Outcome::Error { error: &error }, state, issuer) {
        Some(url) => found(url.as_str()),
        None => web::error_page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            &error.description,
        ),
    }
}

/// A refusal the person must read before their application hears of it:
/// a page naming the account and the reason, which then sends the browser
/// back to the client with the OAuth error (`state` and `iss` included), so
/// the client stops waiting and can show it at once. The page goes on by
/// itself after a few seconds, or at once with its link.
pub fn refusal_page(
    issuer: &str,
    target: &str,
    state: Option<&str>,
    status: StatusCode,
    title: &str,
    message: &str,
    error: OAuthError,
) -> Response {
    let Some(url) = redirect::build(target, Outcome::Error { error: &error }, state, issuer) else {
        return web::error_page(status, title, message);
    };
    let back = web::escape(url.as_str());
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p>\
         <p><a id=\"back\" href=\"{back}\">Back to your application</a>, which is told \
         the sign-in was refused ({}).</p>",
        web::escape(title),
        web::escape(message),
        web::escape(error.code.as_str()),
    );
    let mut resp = web::page(status, title, &body);
    // A refresh, not a script: the page's CSP allows no scripts.
    if let Ok(v) = HeaderValue::from_str(&format!("5; url={}", url.as_str())) {
        resp.headers_mut().insert(header::REFRESH, v);
    }
    resp
}

/// 302, which every client follows (a 307 broke Claude.ai), with the page headers.
pub fn found(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    web::secure_headers(h);
    resp
}

/// Where the person is sent back to, as the consent page shows it: the host
/// (with the port for plain http, as loopback clients use), or the scheme of a
/// native app's URI.
pub fn redirect_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => match u.host_str() {
            Some(h) if u.scheme() == "https" || u.scheme() == "http" => match u.port() {
                Some(p) if u.scheme() == "http" => format!("{h}:{p}"),
                _ => h.to_string(),
            },
            Some(h) => format!("{}://{h}", u.scheme()),
            None => format!("{}:", u.scheme()),
        },
        Err(_) => uri.chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    fn location(resp: &Response) -> Url {
        let l = resp.headers()[header::LOCATION].to_str().unwrap();
        Url::parse(l).unwrap()
    }

    #[test]
    fn found_is_a_302_with_the_page_headers() {
        let resp = found("https://app.example/cb?code=1");
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://app.example/cb?code=1"
        );
        assert!(
            resp.headers().len() > 1,
            "secure headers: {:?}",
            resp.headers()
        );
    }

    #[test]
    fn an_error_goes_back_with_state_and_issuer() {
        let resp = redirect_error(
            "https://gw.example",
            "https://app.example/cb?keep=1",
            Some("xyz"),
            OAuthError::new(ErrorCode::AccessDenied, "the user denied access"),
        );
        assert_eq!(resp.status(), StatusCode::FOUND);
        let url = location(&resp);
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("keep"), Some("1"));
        assert_eq!(get("error"), Some("access_denied"));
        assert_eq!(get("error_description"), Some("the user denied access"));
        assert_eq!(get("state"), Some("xyz"));
        assert_eq!(get("iss"), Some("https://gw.example"));
    }

    #[test]
    fn an_error_without_state_sends_none() {
        let resp = redirect_error(
            "https://gw.example",
            "https://app.example/cb",
            None,
            OAuthError::new(ErrorCode::InvalidRequest, "bad"),
        );
        assert!(location(&resp).query_pairs().all(|(k, _)| k != "state"));
    }

    #[test]
    fn an_unusable_target_is_a_page() {
        let resp = redirect_error(
            "https://gw.example",
            "not a url",
            None,
            OAuthError::new(ErrorCode::InvalidRequest, "bad"),
        );
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.headers().get(header::LOCATION).is_none());
    }

    #[test]
    fn a_refusal_page_explains_and_sends_the_client_its_error() {
        let resp = refusal_page(
            "https://gw.example",
            "http://127.0.0.1:5000/cb",
            Some("st"),
            StatusCode::FORBIDDEN,
            "Access denied",
            "eve@other.com is signed in, but <not allowed>",
            OAuthError::new(ErrorCode::AccessDenied, "eve@other.com is not allowed"),
        );
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let refresh = resp.headers()[header::REFRESH]
            .to_str()
            .unwrap()
            .to_string();
        let url = Url::parse(refresh.trim_start_matches("5; url=")).unwrap();
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("error"), Some("access_denied"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("iss"), Some("https://gw.example"));
    }

    #[test]
    fn the_consent_page_names_the_host() {
        assert_eq!(redirect_host("https://app.example:8443/cb"), "app.example");
        assert_eq!(redirect_host("http://127.0.0.1:3000/cb"), "127.0.0.1:3000");
        assert_eq!(
            redirect_host("com.example.app://cb"),
            "com.example.app://cb"
        );
        assert_eq!(redirect_host("com.example.app:/cb"), "com.example.app:");
        assert_eq!(redirect_host(&"x".repeat(100)), "x".repeat(80));
    }
}
