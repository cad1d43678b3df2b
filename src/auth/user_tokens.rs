//! Each person's own token for a service: typed in at `/my/tokens`, or obtained
//! by the upstream OAuth flow of the service (`upstream`). Always sealed at rest
//! (`store::sealed`); the store file never holds one in clear.

use serde::{Deserialize, Serialize};

use super::Auth;
use crate::caller::UserId;
use crate::store::Record;
use crate::store::sealed::{SealError, Sealed, Sealer};
use crate::util::now_unix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Pasted by the person at `/my/tokens`.
    Manual,
    /// From the service's OAuth provider ("Connect").
    Oauth,
}

/// Key: `<user>\n<service>`; the same text is the sealing's associated data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserToken {
    pub source: Source,
    pub token: Sealed,
    /// Upstream OAuth only: the refresh token, and when the access token expires.
    #[serde(default)]
    pub refresh: Option<Sealed>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The last characters, so the page can tell tokens apart without showing them.
    pub hint: String,
    pub updated_at: i64,
}

impl Record for UserToken {
    const KIND: &'static str = "user_token";
}

pub fn key(user: &UserId, service: &str) -> String {
    format!("{}\n{service}", user.as_str())
}

/// The last four characters of a secret, or fewer for short ones.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let n = if chars.len() >= 16 {
        4
    } else {
        chars.len() / 4
    };
    chars[chars.len() - n..].iter().collect()
}

#[derive(Debug, thiserror::Error)]
pub enum UserTokenError {
    #[error("per-user tokens need proxy.auth.encryptionKey")]
    NoKey,
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An upstream OAuth token expired and could not be renewed.
    #[error(
        "your {service} connection could not be renewed ({reason}); connect {service} again at {reconnect}"
    )]
    UpstreamRefreshFailed {
        service: String,
        reason: String,
        reconnect: String,
    },
}

impl Auth {
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// The stored record of a person's token for a service.
    pub async fn user_token_record(
        &self,
        user: &UserId,
        service: &str,
    ) -> Result<Option<UserToken>, UserTokenError> {
        Ok(self.store.get::<UserToken>(&key(user, service)).await?)
    }

    /// Store a token a person typed in.
    pub async fn set_user_token(
        &self,
        user: &UserId,
        service: &str,
        value: &str,
    ) -> Result<(), UserTokenError> {
        let sealer = self.sealer().ok_or(UserTokenError::NoKey)?;
        let k = key(user, service);
        let record = UserToken {
            source: Source::Manual,
            token: sealer.seal(value.as_bytes(), &k)?,
            refresh: None,
            expires_at: None,
            hint: hint(value),
            updated_at: now_unix(),
        };
        self.store.put(&k, &record, None).await?;
        Ok(())
    }

    pub async fn delete_user_token(
        &self,
        user: &UserId,
        service: &str,
    ) -> Result<bool, UserTokenError> {
        Ok(self.store.delete::<UserToken>(&key(user, service)).await?)
    }
}

/// Re-seal every stored user token with the current key (`mcpgate rotate-keys`).
/// Returns how many records were re-sealed.
pub async fn reseal_all(
    store: &crate::store::Store,
    sealer: &Sealer,
) -> Result<usize, UserTokenError> {
    let mut count = 0;
    for (k, mut record) in store.list::<UserToken>().await? {
        let (listed_at, listed_kid) = (record.updated_at, record.token.kid.clone());
        let mut changed = false;
        if record.token.kid != sealer.current_kid() {
            let plain = sealer.open(&record.token, &k)?;
            record.token = sealer.seal(&plain, &k)?;
            changed = true;
        }
        if let Some(r) = &record.refresh
            && r.kid != sealer.current_kid()
        {
            let plain = sealer.open(r, &k)?;
            record.refresh = Some(sealer.seal(&plain, &k)?);
            changed = true;
        }
        if changed {
            // The gateway may have written this record meanwhile (a refresh, a
            // new token, a removal): only replace what is still as it was read,
            // so nothing is lost or brought back.
            let current = store.get::<UserToken>(&k).await?;
            if current.is_some_and(|c| c.updated_at == listed_at && c.token.kid == listed_kid) {
                store.put(&k, &record, None).await?;
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_show_little() {
        assert_eq!(hint("secret_0123456789abcdef"), "cdef");
        assert_eq!(hint("short"), "t");
        assert_eq!(hint(""), "");
    }
}
