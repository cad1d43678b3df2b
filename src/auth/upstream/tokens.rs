//! The provider's token endpoint: codes and refresh tokens redeemed (through
//! `oauth::client`), what comes back sealed and stored, and why a request
//! failed, in words that never hold a secret.

use std::sync::OnceLock;

use super::*;

/// Seal and keep what a token endpoint returned. `refresh`: the refresh token
/// to keep (the new one, or the old one when the provider did not rotate it).
pub(super) async fn store(
    auth: &Auth,
    user: &UserId,
    service: &str,
    tokens: &TokenResponse,
    refresh: Option<&str>,
) -> Result<(), UserTokenError> {
    let sealer = auth.sealer().ok_or(UserTokenError::NoKey)?;
    let k = user_tokens::key(user, service);
    let record = UserToken {
        source: Source::Oauth,
        token: sealer.seal(tokens.access_token.expose().as_bytes(), &k)?,
        refresh: refresh.map(|r| sealer.seal(r.as_bytes(), &k)).transpose()?,
        // No usable lifetime (absent, zero, absurd) means no known expiry.
        expires_at: tokens
            .expires_in
            .and_then(|s| i64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(|s| now_unix().saturating_add(s)),
        // Nothing of an OAuth token is shown: the person never saw it anyway.
        hint: String::new(),
        updated_at: now_unix(),
    };
    auth.store.put(&k, &record, None).await?;
    Ok(())
}

/// Why a token request failed, as the person and the logs are told. Never
/// holds a token, code or secret (see `oauth::client`).
#[derive(Debug, thiserror::Error)]
pub(super) enum UpstreamError {
    #[error("the gateway's configuration is wrong: {0}")]
    Config(String),
    #[error("the provider could not be reached ({0})")]
    Network(String),
    #[error("the provider answered {error}{}", describe(description))]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the provider's answer was not usable ({0})")]
    Invalid(String),
}

pub(super) fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl UpstreamError {
    pub(super) fn is_invalid_grant(&self) -> bool {
        matches!(self, UpstreamError::Refused { error, .. } if error == "invalid_grant")
    }
}

impl From<TokenError> for UpstreamError {
    fn from(e: TokenError) -> UpstreamError {
        match e {
            TokenError::Setup(_) => UpstreamError::Config(e.to_string()),
            TokenError::Http(HttpError::Network { reason, .. }) => UpstreamError::Network(reason),
            TokenError::Http(HttpError::TooLarge { limit, .. }) => {
                UpstreamError::Invalid(format!("the answer is larger than {limit} bytes"))
            }
            TokenError::Refused {
                error, description, ..
            } => UpstreamError::Refused { error, description },
            // A 401 without an OAuth error body is still a refused client.
            e @ TokenError::Status { .. } if e.is_invalid_client() => UpstreamError::Refused {
                error: "invalid_client".into(),
                description: None,
            },
            TokenError::Status { status, .. } => UpstreamError::Invalid(format!("HTTP {status}")),
            TokenError::Invalid { problem, .. } => UpstreamError::Invalid(match problem {
                ResponseProblem::NotJson | ResponseProblem::NoAccessToken => {
                    "no access_token in a JSON answer".into()
                }
                other => other.to_string(),
            }),
        }
    }
}

pub(super) fn http() -> Result<&'static OAuthHttp, UpstreamError> {
    static CLIENT: OnceLock<Result<OAuthHttp, TokenError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            OAuthHttp::build(
                concat!("mcpgate/", env!("CARGO_PKG_VERSION")),
                CONNECT_TIMEOUT,
                REQUEST_TIMEOUT,
                MAX_RESPONSE_BYTES,
            )
        })
        .as_ref()
        .map_err(|e| UpstreamError::Config(e.to_string()))
}

/// Redeem a code or a refresh token at the service's token endpoint.
///
/// Client authentication: HTTP Basic first (RFC 6749 requires servers to take
/// it; Notion takes nothing else), then once more with the secret in the body
/// if the provider says `invalid_client` (some, like Linear's docs, show only
/// that): [`AuthMethod::BasicThenPost`].
pub(super) async fn request_tokens(
    client: &Client<'_>,
    grant: Grant<'_>,
) -> Result<TokenResponse, UpstreamError> {
    let url =
        endpoint("tokenUrl", client.token_url).map_err(|e| UpstreamError::Config(e.to_string()))?;
    let request = TokenRequest {
        endpoint: &url,
        client: Credentials {
            client_id: client.client_id,
            client_secret: Some(client.client_secret),
            method: AuthMethod::BasicThenPost,
        },
        grant,
        resource: None,
    };
    Ok(oauth::request_token(http()?, &request).await?)
}
