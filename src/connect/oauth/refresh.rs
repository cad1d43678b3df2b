//! Refresh (RFC 6749 section 6) with the cached refresh token, and what a
//! failed refresh means for the caller: sign in again, or not.

use super::discovery::Discovery;
use super::{Auth, tokens_from};
use crate::connect::cache::{CacheError, Tokens};
use crate::oauth::client::{Grant, TokenError};

/// Why a refresh did not give new tokens.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the cached client registration does not match the cached tokens")]
    NoClient,
    #[error("no refresh token")]
    NoRefreshToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token cache could not be written.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl RefreshError {
    /// Whether signing in again may help: the authorization server answered,
    /// and refused. Without an OAuth answer (network, 5xx) the grant may well
    /// be fine, and a browser tab would not help an unreachable server.
    pub(super) fn sign_in_may_help(&self) -> bool {
        match self {
            RefreshError::NoClient => true,
            RefreshError::Token(e) => e.oauth_error().is_some(),
            RefreshError::NoRefreshToken | RefreshError::Cache(_) => false,
        }
    }
}

impl Auth {
    pub(super) async fn refresh(&self, d: &Discovery, held: &Tokens) -> Result<(), RefreshError> {
        let entry = self.cache.load();
        let client = entry
            .client
            .filter(|c| c.client_id == held.client_id && c.issuer == d.meta.issuer)
            .ok_or(RefreshError::NoClient)?;
        let refresh_token = held
            .refresh_token
            .clone()
            .ok_or(RefreshError::NoRefreshToken)?;
        let grant = Grant::RefreshToken {
            refresh_token: &refresh_token,
        };
        let answer = self.request_token(d, &client, grant).await?;
        let tokens = tokens_from(
            answer,
            d,
            &client,
            held.scope.clone(),
            Some(refresh_token.clone()),
        );
        self.store(tokens)?;
        Ok(())
    }
}
