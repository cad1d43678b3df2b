//! Redirect URIs: what a client may register, how a requested URI is matched to
//! the registered ones, and the single function that builds every redirect back
//! to a client (so `iss` and `state` can never be forgotten on one path).
//!
//! Rules (RFC 6749 §3.1.2, RFC 8252 §7, and what real clients send, see
//! CLIENTS.md): `https` anywhere; plain `http` only to loopback hosts
//! (`127.0.0.1`, `[::1]`, `localhost`), where the port is not compared because
//! native clients pick a free one each time; private-use schemes such as
//! `cursor://`; never a fragment, credentials, or a scheme that runs code or
//! names local data (`javascript:`, `data:`, `file:`, ...).

use std::fmt;

use url::Url;

use super::error::{ErrorCode, OAuthError};
use crate::util::is_loopback_host;

/// Schemes that must never receive an authorization response.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "vbscript",
    "file",
    "blob",
    "about",
    "filesystem",
    "ftp",
    "ws",
    "wss",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Https,
    /// `http` to a loopback host: any port matches.
    Loopback,
    /// A private-use scheme of a native app (`cursor://...`).
    PrivateScheme,
}

/// A redirect URI that passed the registration rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    url: Url,
    kind: RedirectKind,
}

impl RedirectUri {
    /// Validate a URI a client wants to register.
    pub fn register(text: &str) -> Result<RedirectUri, OAuthError> {
        let refuse = |why: &str| {
            OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!("redirect URI {}: {why}", shorten(text)),
            )
        };
        if text.contains('#') {
            return Err(refuse("must not contain a fragment (RFC 6749 §3.1.2)"));
        }
        let url = Url::parse(text).map_err(|e| refuse(&format!("is not an absolute URI ({e})")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("must not carry credentials"));
        }
        let scheme = url.scheme();
        let kind = match scheme {
            "https" => {
                if url.host().is_none() {
                    return Err(refuse("needs a host"));
                }
                RedirectKind::Https
            }
            "http" => {
                if !url.host_str().is_some_and(is_loopback_host) {
                    return Err(refuse(
                        "plain http is only allowed to 127.0.0.1, [::1] or localhost; use https",
                    ));
                }
                RedirectKind::Loopback
            }
            s if FORBIDDEN_SCHEMES.contains(&s) => {
                return Err(refuse(&format!("the scheme {s:?} is not allowed")));
            }
            _ => RedirectKind::PrivateScheme,
        };
        Ok(RedirectUri { url, kind })
    }

    pub fn kind(&self) -> RedirectKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// Whether `requested` (from `/authorize` or `/token`) is this URI. Exact,
    /// except that a loopback URI matches on any port.
    pub fn matches(&self, requested: &str) -> bool {
        if requested == self.url.as_str() {
            return true;
        }
        let Ok(req) = Url::parse(requested) else {
            return false;
        };
        if req == self.url {
            return true;
        }
        self.kind == RedirectKind::Loopback
            && req.scheme() == "http"
            && req.host_str() == self.url.host_str()
            && req.path() == self.url.path()
            && req.query() == self.url.query()
            && req.fragment().is_none()
            && req.username().is_empty()
            && req.password().is_none()
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// The registered URI that `requested` matches, if any.
pub fn find<'a>(registered: &'a [RedirectUri], requested: &str) -> Option<&'a RedirectUri> {
    registered.iter().find(|r| r.matches(requested))
}

/// The outcome sent back to a client on its redirect URI.
pub enum Outcome<'a> {
    Code { code: &'a str },
    Error { error: &'a OAuthError },
}

/// Build the redirect to `target` (the URI the client sent, already matched):
/// the outcome, `state` when the client sent one, and `iss` (RFC 9207) always.
/// Existing query parameters of the registered URI are kept.
pub fn build(target: &str, outcome: Outcome<'_>, state: Option<&str>, issuer: &str) -> Option<Url> {
    let mut url = Url::parse(target).ok()?;
    {
        let mut q = url.query_pairs_mut();
        match outcome {
            Outcome::Code { code } => {
                q.append_pair("code", code);
            }
            Outcome::Error { error } => {
                q.append_pair("error", error.code.as_str());
                q.append_pair("error_description", &error.description);
            }
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    Some(url)
}

/// URIs in error messages are cut short: they are the client's, not secret, but
/// may be long.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_real_clients_register_is_accepted() {
        for uri in [
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback",
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "http://localhost:33418/callback",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
            "http://[::1]:8080/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://vscode.dev/redirect",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(
                RedirectUri::register(uri).is_ok(),
                "{uri} should be accepted"
            );
        }
    }

    #[test]
    fn dangerous_uris_are_refused_with_the_reason() {
        for (uri, why) in [
            ("javascript:alert(1)", "scheme"),
            ("data:text/html,hi", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("https://app.example.com/cb#frag", "fragment"),
            ("http://app.example.com/cb", "plain http"),
            ("http://10.0.0.1/cb", "plain http"),
            ("https://user:pw@app.example.com/cb", "credentials"),
            ("/relative/cb", "absolute"),
        ] {
            let err = RedirectUri::register(uri).expect_err(uri);
            assert_eq!(err.code, ErrorCode::InvalidRedirectUri);
            assert!(err.description.contains(why), "{uri}: {}", err.description);
        }
    }

    #[test]
    fn loopback_matches_any_port_and_nothing_else_does() {
        let lo = RedirectUri::register("http://127.0.0.1/callback").expect("valid");
        assert!(lo.matches("http://127.0.0.1/callback"));
        assert!(lo.matches("http://127.0.0.1:51234/callback"));
        assert!(!lo.matches("http://127.0.0.1:51234/other"));
        assert!(
            !lo.matches("http://localhost:51234/callback"),
            "host must match"
        );
        assert!(!lo.matches("https://127.0.0.1/callback"));
        assert!(!lo.matches("http://127.0.0.1:1/callback#x"));

        let https =
            RedirectUri::register("https://claude.ai/api/mcp/auth_callback").expect("valid");
        assert!(https.matches("https://claude.ai/api/mcp/auth_callback"));
        assert!(
            !https.matches("https://claude.ai:8443/api/mcp/auth_callback"),
            "ports matter off loopback"
        );
        assert!(!https.matches("https://claude.ai/api/mcp/auth_callback/x"));
        assert!(!https.matches("https://evil.example/api/mcp/auth_callback"));

        let registered = vec![https, lo];
        assert!(find(&registered, "http://127.0.0.1:9/callback").is_some());
        assert!(find(&registered, "https://attacker.example/cb").is_none());
    }

    #[test]
    fn redirects_carry_state_and_issuer_and_keep_the_query() {
        let url = build(
            "https://app.example.com/cb?tenant=7",
            Outcome::Code { code: "abc" },
            Some("s t&ate"),
            "https://mcp.example.com",
        )
        .expect("url");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("tenant".into(), "7".into()),
                ("code".into(), "abc".into()),
                ("state".into(), "s t&ate".into()),
                ("iss".into(), "https://mcp.example.com".into()),
            ]
        );
        let err = OAuthError::new(ErrorCode::AccessDenied, "the user declined");
        let url = build(
            "cursor://x/cb",
            Outcome::Error { error: &err },
            None,
            "https://i",
        )
        .expect("url");
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["error"], "access_denied");
        assert_eq!(q["iss"], "https://i");
        assert!(!q.contains_key("state"));
    }
}
