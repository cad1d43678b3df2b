//! The `/authorize` parameters, checked without I/O: which redirect URI applies
//! (stage 1: its errors are shown as a page, since the URI cannot be trusted
//! yet), the code-flow parameters (stage 2: errors go back to the client),
//! `prompt`, and the page `/my/login` returns to. Pure, so every rule has a
//! unit test; `authorize` does the lookups (client, resource) around them.

use serde::Deserialize;

use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::{self, RedirectUri};

#[derive(Debug, Default, Deserialize)]
pub struct AuthorizeQuery {
    pub(super) response_type: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) code_challenge: Option<String>,
    pub(super) code_challenge_method: Option<String>,
    pub(super) state: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) prompt: Option<String>,
}

/// Stage 1: the redirect URI is not one the client registered. Shown as a page
/// (redirecting there would make the gateway an open redirector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    #[error(
        "The application asked to return to an address it did not register. For your safety the sign-in stops here."
    )]
    Unregistered,
    #[error("The request has no redirect_uri and the application registered several.")]
    Ambiguous,
}

impl RedirectRefused {
    /// The page's title.
    pub fn title(self) -> &'static str {
        match self {
            RedirectRefused::Unregistered => "Invalid redirect URI",
            RedirectRefused::Ambiguous => "Invalid authorization request",
        }
    }
}

/// The redirect URI of this request: the one sent, if registered; else the only
/// one registered.
pub fn redirect_uri(
    registered: &[RedirectUri],
    requested: Option<&str>,
) -> Result<String, RedirectRefused> {
    match requested {
        Some(r) if redirect::find(registered, r).is_some() => Ok(r.to_string()),
        Some(_) => Err(RedirectRefused::Unregistered),
        None if registered.len() == 1 => Ok(registered[0].to_string()),
        None => Err(RedirectRefused::Ambiguous),
    }
}

/// Stage 2: the authorization code flow with PKCE S256 and a bounded `state`.
/// Gives the code challenge.
pub fn code_challenge(q: &AuthorizeQuery) -> Result<String, OAuthError> {
    if q.response_type.as_deref() != Some("code") {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            "response_type must be \"code\" (the authorization code flow)",
        ));
    }
    let Some(challenge) = q.code_challenge.clone() else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge is required: PKCE with S256 is mandatory",
        ));
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256 (plain is not accepted)",
        ));
    }
    if !is_pkce_value(&challenge) {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge must be 43-128 characters of base64url",
        ));
    }
    if q.state.as_ref().is_some_and(|s| s.len() > 2048) {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "state is too long (over 2048 bytes)",
        ));
    }
    Ok(challenge)
}

/// `prompt=login` and `prompt=consent` (space-separated, OpenID Connect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub login: bool,
    pub consent: bool,
}

impl Prompt {
    pub fn parse(prompt: Option<&str>) -> Prompt {
        let has = |word: &str| prompt.is_some_and(|p| p.split(' ').any(|p| p == word));
        Prompt {
            login: has("login"),
            consent: has("consent"),
        }
    }
}

/// Where `/my/login?next=...` returns: one of the gateway's own `/my/` pages,
/// never another site (`//host`, `\`), else `/my/tokens`.
pub fn self_service_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/my/") && !n.contains("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/my/tokens".to_string())
}

/// A PKCE code challenge or verifier: 43-128 characters of the unreserved set.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn registered(uris: &[&str]) -> Vec<RedirectUri> {
        uris.iter()
            .map(|u| RedirectUri::register(u).expect("a valid redirect URI"))
            .collect()
    }

    fn good() -> AuthorizeQuery {
        AuthorizeQuery {
            response_type: Some("code".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            state: Some("xyz".into()),
            ..AuthorizeQuery::default()
        }
    }

    #[test]
    fn the_redirect_uri_sent_must_be_registered() {
        let one = registered(&["https://app.example/cb"]);
        assert_eq!(
            redirect_uri(&one, Some("https://app.example/cb")),
            Ok("https://app.example/cb".to_string())
        );
        assert_eq!(
            redirect_uri(&one, Some("https://evil.example/cb")),
            Err(RedirectRefused::Unregistered)
        );
        assert_eq!(
            RedirectRefused::Unregistered.title(),
            "Invalid redirect URI"
        );
    }

    #[test]
    fn without_a_redirect_uri_only_a_single_registered_one_applies() {
        let one = registered(&["https://app.example/cb"]);
        assert_eq!(
            redirect_uri(&one, None),
            Ok("https://app.example/cb".to_string())
        );
        let two = registered(&["https://app.example/a", "https://app.example/b"]);
        assert_eq!(redirect_uri(&two, None), Err(RedirectRefused::Ambiguous));
    }

    #[test]
    fn a_good_request_gives_its_challenge() {
        assert_eq!(code_challenge(&good()).unwrap(), CHALLENGE);
    }

    #[test]
    fn each_code_flow_rule_has_its_error() {
        let cases: Vec<(AuthorizeQuery, ErrorCode, &str)> = vec![
            (
                AuthorizeQuery {
                    response_type: Some("token".into()),
                    ..good()
                },
                ErrorCode::UnsupportedResponseType,
                "response_type",
            ),
            (
                AuthorizeQuery {
                    code_challenge: None,
                    ..good()
                },
                ErrorCode::InvalidRequest,
                "code_challenge is required",
            ),
            (
                AuthorizeQuery {
                    code_challenge_method: Some("plain".into()),
                    ..good()
                },
                ErrorCode::InvalidRequest,
                "S256",
            ),
            (
                AuthorizeQuery {
                    code_challenge: Some("short".into()),
                    ..good()
                },
                ErrorCode::InvalidRequest,
                "43-128",
            ),
            (
                AuthorizeQuery {
                    state: Some("s".repeat(2049)),
                    ..good()
                },
                ErrorCode::InvalidRequest,
                "state is too long",
            ),
        ];
        for (q, code, words) in cases {
            let e = code_challenge(&q).unwrap_err();
            assert_eq!(e.code, code, "{q:?}");
            assert!(e.description.contains(words), "{}", e.description);
        }
        // The limit itself is allowed.
        let at_limit = AuthorizeQuery {
            state: Some("s".repeat(2048)),
            ..good()
        };
        assert!(code_challenge(&at_limit).is_ok());
    }

    #[test]
    fn prompt_words() {
        assert_eq!(Prompt::parse(None), Prompt::default());
        assert_eq!(
            Prompt::parse(Some("login consent")),
            Prompt {
                login: true,
                consent: true
            }
        );
        assert_eq!(
            Prompt::parse(Some("consent")),
            Prompt {
                login: false,
                consent: true
            }
        );
        assert_eq!(Prompt::parse(Some("loginx")), Prompt::default());
    }

    #[test]
    fn self_service_returns_only_to_my_pages() {
        assert_eq!(self_service_next(None), "/my/tokens");
        assert_eq!(
            self_service_next(Some("/my/connections".into())),
            "/my/connections"
        );
        for bad in [
            "https://evil.example/my/",
            "/my//evil.example",
            "/my/\\x",
            "/admin",
        ] {
            assert_eq!(self_service_next(Some(bad.into())), "/my/tokens", "{bad}");
        }
    }

    #[test]
    fn pkce_values() {
        assert!(is_pkce_value(CHALLENGE));
        assert!(is_pkce_value(&"a".repeat(128)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }
}
