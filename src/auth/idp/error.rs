//! Why a login at an identity provider failed, for the person or the
//! administrator ([`IdpError`], [`IdTokenProblem`]), and how the shared OAuth
//! client's errors become these. Messages never contain codes, tokens or secrets.

use crate::oauth::client::{HttpError, TokenError};

/// Why a login could not be completed. Messages are meant for the person or
/// the administrator, and never contain codes, tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The provider could not be discovered or its metadata is unusable.
    #[error("OpenID Connect discovery at {url} failed: {reason}")]
    Discovery { url: String, reason: String },
    /// The settings cannot work.
    #[error("identity provider configuration: {0}")]
    Config(String),
    /// The provider's token endpoint refused the code; `error` is its OAuth
    /// error code (e.g. `invalid_grant`).
    #[error(
        "the identity provider refused the login: {error}{}",
        describe(description)
    )]
    ProviderRefused {
        error: String,
        description: Option<String>,
    },
    #[error("the identity provider's ID token was rejected: {0}")]
    InvalidIdToken(IdTokenProblem),
    #[error("the identity provider has not verified the email address {email}")]
    EmailNotVerified { email: String },
    #[error("the identity provider did not share an email address for this account")]
    NoEmail,
    /// The provider answered, but not as the protocol says it should.
    #[error("the identity provider's answer from {url} was not usable: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("could not reach the identity provider at {url}: {reason}")]
    Network { url: String, reason: String },
    /// The pending login belongs to another provider (configuration changed
    /// during the login, or a mixed-up callback).
    #[error("this login was started with the {started} provider, not {this}")]
    WrongProvider { started: String, this: &'static str },
}

impl IdpError {
    /// The OAuth error the client is sent back with (RFC 6749 §4.1.2.1): the
    /// person's account is refused (`access_denied`), the provider cannot be
    /// reached (`temporarily_unavailable`), or something else went wrong
    /// between the gateway and the provider (`server_error`).
    pub fn oauth_code(&self) -> crate::oauth::error::ErrorCode {
        use crate::oauth::error::ErrorCode;
        match self {
            IdpError::EmailNotVerified { .. }
            | IdpError::NoEmail
            | IdpError::ProviderRefused { .. } => ErrorCode::AccessDenied,
            IdpError::Network { .. } => ErrorCode::TemporarilyUnavailable,
            _ => ErrorCode::ServerError,
        }
    }
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// What was wrong with an ID token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenProblem {
    #[error("the token response had no ID token (was the openid scope granted?)")]
    Missing,
    #[error("it is not a well-formed signed JWT")]
    Malformed,
    #[error("it is signed with {0}, which is not accepted")]
    Algorithm(String),
    #[error("it is signed with a key the provider does not publish")]
    UnknownKey,
    #[error("its signature does not verify with the provider's published key")]
    Signature,
    #[error("it was issued by another issuer than the configured one")]
    Issuer,
    #[error("it was issued to another client (its audience is not this client id)")]
    Audience,
    #[error("its authorized party (azp) is another client")]
    AuthorizedParty,
    #[error("its nonce does not match this login")]
    Nonce,
    #[error("it has expired (is this server's clock right?)")]
    Expired,
    #[error("it was issued in the future (is this server's clock right?)")]
    IssuedInFuture,
    #[error("it has no valid {0} claim")]
    MissingClaim(String),
}

impl From<HttpError> for IdpError {
    fn from(e: HttpError) -> IdpError {
        match e {
            HttpError::Network { url, reason } => IdpError::Network { url, reason },
            HttpError::TooLarge { url, limit } => IdpError::InvalidResponse {
                url,
                reason: format!("the answer is larger than {limit} bytes"),
            },
        }
    }
}

impl From<TokenError> for IdpError {
    fn from(e: TokenError) -> IdpError {
        match e {
            TokenError::Setup(_) => IdpError::Config(e.to_string()),
            TokenError::Http(e) => e.into(),
            TokenError::Refused {
                error, description, ..
            } => IdpError::ProviderRefused { error, description },
            TokenError::Status { url, status, .. } => IdpError::InvalidResponse {
                url,
                reason: format!("HTTP {status}"),
            },
            TokenError::Invalid { url, problem, .. } => IdpError::InvalidResponse {
                url,
                reason: problem.to_string(),
            },
        }
    }
}
