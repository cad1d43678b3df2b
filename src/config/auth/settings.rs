//! Validated `proxy.auth`: what the authorization server runs with.

use std::fmt;
use std::time::Duration;

/// A secret from the configuration. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Validated `proxy.auth`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub idp: IdpSettings,
    pub policy: AccessPolicy,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub refresh_grace: Duration,
    pub login_ttl: Duration,
    pub client_expiry: Duration,
    pub registration_open: bool,
    pub clients: Vec<StaticClient>,
    pub require_resource: bool,
    pub storage: String,
    pub cimd_enabled: bool,
    pub cimd_allow_private: bool,
    pub rate_token: u32,
    pub rate_register: u32,
    pub rate_login: u32,
    /// 32-byte keys, the current one first.
    pub encryption_keys: Vec<Secret32>,
}

/// A 32-byte key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

#[derive(Debug, Clone)]
pub enum IdpSettings {
    Local {
        users: Vec<LocalUser>,
    },
    Google {
        issuer: String,
        client_id: String,
        client_secret: Secret,
    },
    Oidc {
        issuer: String,
        client_id: String,
        client_secret: Secret,
        scopes: Vec<String>,
        groups_claim: Option<String>,
    },
    Github {
        client_id: String,
        client_secret: Secret,
        web_url: String,
        api_url: String,
        read_orgs: bool,
    },
}

impl IdpSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            IdpSettings::Local { .. } => "local",
            IdpSettings::Google { .. } => "google",
            IdpSettings::Oidc { .. } => "oidc",
            IdpSettings::Github { .. } => "github",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalUser {
    pub email: String,
    pub password_hash: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// Who may sign in. Empty lists allow nobody, except that the `local` provider's
/// own users are allowed when no list is set (listing them is the decision).
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub domains: Vec<String>,
    pub emails: Vec<String>,
    pub orgs: Vec<String>,
    pub groups: Vec<String>,
    pub allow_all_known_users: bool,
}

#[derive(Debug, Clone)]
pub struct StaticClient {
    pub client_id: String,
    pub secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    pub name: Option<String>,
}
