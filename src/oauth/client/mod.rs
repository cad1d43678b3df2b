//! The outbound OAuth client: what mcpgate does when *it* is the client of
//! someone else's authorization server. Three places need it, each with its own
//! flow around the same few requests:
//!
//! - `auth::idp` signs people in with Google, any OpenID Connect provider or
//!   GitHub (authorization code with PKCE);
//! - `auth::upstream` connects a person's account at a backend's own OAuth
//!   provider, and refreshes that token later;
//! - `connect` is the `mcpgate connect` bridge, a public or confidential client
//!   of remote MCP servers (code with PKCE, refresh, device code).
//!
//! This module holds what they share: PKCE, the rule on where plain http may
//! carry secrets, the token endpoint request with client authentication, the
//! typed token response, and the redaction of secrets from everything that can
//! end up in a log or an error page.
//!
//! Secrets (client secrets, codes, PKCE verifiers, device codes, tokens) are
//! kept in [`Secret`], whose `Debug` prints nothing of them, and no error of
//! this module ever holds one: text a server sends back is only shown through
//! [`provider_text`], which drops it when it echoes a secret of the request.
//!
//! It is a low layer: it imports only `crate::util` and external crates.
//!
//! One concern per file: [`secret`] (the `Secret` type, random values),
//! [`pkce`], [`endpoint`] (the https-except-loopback rule and how URLs are
//! shown), [`redact`] (server text made safe), [`http`] (the HTTP client),
//! [`error`] and [`token`] (the token and device authorization requests).
//! Callers use the re-exports below: `crate::oauth::client::X`.

mod endpoint;
mod error;
mod http;
mod pkce;
mod redact;
mod secret;
mod token;

pub use endpoint::{EndpointError, PlainHttp, check_endpoint, parse_endpoint, shown};
pub use error::{HttpError, ResponseProblem, TokenError};
pub use http::{Answer, OAuthHttp, SendFn};
pub use pkce::Pkce;
pub use redact::{error_chain, provider_error_text, provider_text};
pub use secret::{Secret, random_secret};
pub use token::{
    AuthMethod, Credentials, DEVICE_CODE_GRANT, DeviceAuthorization, Grant, TokenRequest,
    TokenResponse, request_device_authorization, request_token,
};

/// Fixtures the tests of these files share: secrets that must never show.
#[cfg(test)]
mod test_support {
    pub const SECRETS: [&str; 6] = [
        "client-secret-1",
        "code-secret-2",
        "verifier-secret-3",
        "access-secret-4",
        "refresh-secret-5",
        "id-secret-6",
    ];

    pub fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("test URL")
    }

    pub fn assert_no_secret(text: &str) {
        for s in SECRETS {
            assert!(!text.contains(s), "{s} in {text}");
        }
    }
}
