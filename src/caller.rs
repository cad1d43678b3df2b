//! Who is calling: the identity types every layer shares.
//!
//! `UserId` and `ClientId` are defined here, below `auth` and the MCP layers,
//! so that sessions, policies and backends can name a person without importing
//! the authorization server.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use serde::{Deserialize, Serialize};

/// Who a person is at the gateway: `<provider>:<subject>` (stable across email changes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new(s: impl Into<String>) -> UserId {
        UserId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OAuth client's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn new(s: impl Into<String>) -> ClientId {
        ClientId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller of an MCP request, from the edge (where its token is verified)
/// to the start of a backend (where its values fill the service's settings).
/// Sessions are bound to it, policies judge it, audit records name it: one type
/// all the way, so nothing about the caller is lost between layers.
#[derive(Clone)]
pub struct Caller {
    pub user: UserId,
    pub email: String,
    pub client_id: ClientId,
    pub scopes: Vec<String>,
    /// Groups or roles from the identity provider; GitHub organizations as `org:<login>`.
    pub groups: Vec<String>,
    /// The domain that proves membership (Google: the Workspace domain, not
    /// the address's; others: the verified email's domain).
    pub domain: Option<String>,
    /// A `serviceAuths` caller: its configured `user`.
    pub service_identity: Option<String>,
    /// A `serviceAuths` caller's configured token for `{"$userToken": ...}`.
    pub configured_token: Option<String>,
    /// Where this person's own tokens for services are kept (the
    /// authorization server); `None` for callers that have none.
    pub tokens: Option<Arc<dyn PersonalTokens>>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.user)
            .field("email", &self.email)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("groups", &self.groups)
            .field("domain", &self.domain)
            .field("service_identity", &self.service_identity)
            .field(
                "configured_token",
                &self.configured_token.as_ref().map(|_| "(set)"),
            )
            .finish()
    }
}

/// A person's own token for one service, as its backend gets it.
#[derive(Clone)]
pub struct PersonalToken {
    pub value: String,
    /// When it expires (upstream OAuth tokens), unix seconds: sessions using
    /// it end shortly before, so an expired token is never sent.
    pub expires_at: Option<i64>,
}

/// How long a backend may go on using a token that expires in `left`
/// seconds: until 30 s before it expires, but never less than half its
/// remaining life, so a provider that issues short tokens still gets usable
/// sessions (ending one at once would make the service unusable).
pub fn token_usable_for(left: i64) -> std::time::Duration {
    let left = left.max(0);
    std::time::Duration::from_secs((left - 30).max(left / 2) as u64)
}

impl fmt::Debug for PersonalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalToken")
            .field("value", &"(redacted)")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a person's token could not be read (the message names the fix).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenUnavailable(pub String);

/// Where people's own tokens for services are kept: implemented by the
/// authorization server, used by whatever starts a backend for a person.
pub trait PersonalTokens: Send + Sync {
    /// This person's token for `service`, if they have set one (an upstream
    /// OAuth token is refreshed first when it is about to expire).
    fn token<'a>(
        &'a self,
        user: &'a UserId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersonalToken>, TokenUnavailable>>;

    /// Where a person sets their tokens (`/my/tokens`).
    fn setup_url(&self) -> String;
}

impl Caller {
    /// The token this caller's backend of `service` gets: a machine client's
    /// configured one, else the person's own, else none.
    pub async fn token_for(
        &self,
        service: &str,
    ) -> Result<Option<PersonalToken>, TokenUnavailable> {
        if let Some(t) = &self.configured_token {
            return Ok(Some(PersonalToken {
                value: t.clone(),
                expires_at: None,
            }));
        }
        match &self.tokens {
            Some(store) => store.token(&self.user, service).await,
            None => Ok(None),
        }
    }

    /// Where this caller sets their tokens, if anywhere.
    pub fn setup_url(&self) -> Option<String> {
        self.tokens.as_ref().map(|t| t.setup_url())
    }
}

impl Caller {
    /// A person known only by email and groups (the domain taken from the
    /// address), as `mcpgate policy explain --user` describes one.
    pub fn person(email: &str, groups: Vec<String>) -> Caller {
        let email = email.to_ascii_lowercase();
        Caller {
            user: UserId::new(format!("email:{email}")),
            domain: email.rsplit_once('@').map(|(_, d)| d.to_string()),
            email,
            client_id: ClientId::new("-"),
            scopes: Vec::new(),
            groups,
            service_identity: None,
            configured_token: None,
            tokens: None,
        }
    }

    /// A machine client known by its `serviceAuths` user.
    pub fn machine(name: &str) -> Caller {
        Caller {
            user: UserId::new(format!("service:{name}")),
            email: name.to_string(),
            client_id: ClientId::new("service-auth"),
            scopes: Vec::new(),
            groups: Vec::new(),
            domain: None,
            service_identity: Some(name.to_string()),
            configured_token: None,
            tokens: None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service_identity {
            Some(s) => write!(f, "service:{s}"),
            None => f.write_str(&self.email),
        }
    }
}

#[cfg(test)]
mod token_usable_for_tests {
    use std::time::Duration;

    #[test]
    fn backends_stop_30s_before_expiry_but_keep_half_of_a_short_token() {
        assert_eq!(super::token_usable_for(3600), Duration::from_secs(3570));
        assert_eq!(super::token_usable_for(60), Duration::from_secs(30));
        assert_eq!(super::token_usable_for(30), Duration::from_secs(15));
        assert_eq!(super::token_usable_for(0), Duration::ZERO);
        assert_eq!(super::token_usable_for(-5), Duration::ZERO);
    }
}
