//! A person's token for a service as a backend gets it: a token they typed
//! in, opened from its sealed record; or an upstream OAuth token, refreshed
//! first when it is about to expire. Above both `user_tokens` (the records)
//! and `upstream` (the refresh), so neither needs the other's caller.

use futures_util::future::BoxFuture;

use super::user_tokens::{Source, UserTokenError, key};
use super::{Auth, upstream};
use crate::caller::{PersonalToken, PersonalTokens, TokenUnavailable, UserId};

impl Auth {
    /// A person's token for a service, decrypted (upstream OAuth tokens are
    /// refreshed first when they are about to expire).
    pub async fn user_token(
        &self,
        user: &UserId,
        service: &str,
    ) -> Result<Option<String>, UserTokenError> {
        let Some(record) = self.user_token_record(user, service).await? else {
            return Ok(None);
        };
        if record.source == Source::Oauth {
            return upstream::fresh_token(self, user, service, record)
                .await
                .map(Some);
        }
        let sealer = self.sealer().ok_or(UserTokenError::NoKey)?;
        let plain = sealer.open(&record.token, &key(user, service))?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }
}

/// People's tokens as backends get them (see `caller::PersonalTokens`).
impl PersonalTokens for Auth {
    fn token<'a>(
        &'a self,
        user: &'a UserId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersonalToken>, TokenUnavailable>> {
        Box::pin(async move {
            let unavailable = |e: UserTokenError| TokenUnavailable(e.to_string());
            let Some(value) = self.user_token(user, service).await.map_err(unavailable)? else {
                return Ok(None);
            };
            // Read after `user_token`, which may just have refreshed it.
            let expires_at = self
                .user_token_record(user, service)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.expires_at);
            Ok(Some(PersonalToken { value, expires_at }))
        })
    }

    fn setup_url(&self) -> String {
        self.url("/my/tokens")
    }
}
