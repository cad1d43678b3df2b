//! Who is calling: the identity types every layer shares.
//!
//! `UserId` and `ClientId` are defined here, below `auth` and the MCP layers,
//! so that sessions, policies and backends can name a person without importing
//! the authorization server.

use std::fmt;

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
