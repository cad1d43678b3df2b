//! The client's errors: [`HttpError`] (no whole answer), [`TokenError`] (a
//! token or device authorization request failed) and [`ResponseProblem`].
//! In a file of their own because both `http.rs` (which builds the client and
//! sends) and `token.rs` (which reads OAuth answers) produce them; none ever
//! holds a secret.

use reqwest::StatusCode;

/// The request did not get a whole answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("could not reach {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("the answer of {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// What was unusable in a successful-looking answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseProblem {
    #[error("the answer is not a JSON object")]
    NotJson,
    #[error("the answer has no access_token")]
    NoAccessToken,
    #[error("the answer has no device_code and user_code")]
    NoDeviceCode,
}

/// Why a token (or device authorization) request failed. Never holds a secret:
/// what the server said passed through [`provider_text`](super::provider_text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("could not set up the HTTPS client: {0}")]
    Setup(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with an OAuth error (RFC 6749 §5.2), whatever the
    /// status: GitHub sends its errors with 200.
    #[error(
        "{url} refused the {what} ({status}): {error}{}",
        describe(description)
    )]
    Refused {
        url: String,
        what: &'static str,
        status: StatusCode,
        /// The OAuth error code, e.g. `invalid_grant`.
        error: String,
        description: Option<String>,
    },
    /// A failure status without an OAuth error in the body.
    #[error("{url} refused the {what} ({status}): no OAuth error in the answer")]
    Status {
        url: String,
        what: &'static str,
        status: StatusCode,
    },
    #[error("{url} answered the {what} with something unusable: {problem}")]
    Invalid {
        url: String,
        what: &'static str,
        problem: ResponseProblem,
    },
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl TokenError {
    /// The OAuth error code, when the server sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            TokenError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The server does not accept this client (or how it authenticated). A bare
    /// 401 counts: some servers send no body with it.
    pub fn is_invalid_client(&self) -> bool {
        match self {
            TokenError::Refused { error, .. } => error == "invalid_client",
            TokenError::Status { status, .. } => *status == StatusCode::UNAUTHORIZED,
            _ => false,
        }
    }
}
