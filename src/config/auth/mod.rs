//! `proxy.auth`: the authorization server's settings (identity provider, who may
//! sign in, token lifetimes, client registration, storage).
//!
//! The file shape (`AuthConfig`, also the JSON Schema) is validated into
//! [`AuthSettings`], which is what the `auth` module runs with. Secrets become
//! [`Secret`], whose `Debug` never prints them.
//!
//! Files: this one is the file's shape; `settings` what it becomes;
//! `validate` the checks between the two, every problem with its JSON path.

mod settings;
mod validate;

pub use settings::*;

use schemars::JsonSchema;
use serde::Deserialize;

use super::DurationStr;

/// The `proxy.auth` block.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    /// `"oauth"`, the only kind (accepted for mcp-front configs).
    #[serde(default)]
    pub kind: Option<AuthKind>,
    /// Where people sign in.
    pub idp: IdpConfig,
    /// Who may sign in: email domains (`"company.com"`; for Google, the verified
    /// Workspace domain `hd`). Someone matching any allow-list is allowed.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Who may sign in: exact email addresses.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// Who may sign in: GitHub organisations (github provider).
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// Who may sign in: groups from the identity provider's groups claim
    /// (`idp.groupsClaim`, oidc provider) or the local users' `groups`.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Access token lifetime. Default `1h`.
    #[serde(default)]
    pub token_ttl: Option<DurationStr>,
    /// Refresh token lifetime (each rotation starts a new one). Default `30d`.
    #[serde(default)]
    pub refresh_token_ttl: Option<DurationStr>,
    /// How long a just-rotated refresh token still works, for parallel sessions of
    /// one client refreshing at once. Reuse after this revokes the whole family. Default `30s`.
    #[serde(default)]
    pub refresh_grace: Option<DurationStr>,
    /// How long a browser stays signed in at the gateway (so a second client does
    /// not need a second login). Default `12h`.
    #[serde(default)]
    pub login_ttl: Option<DurationStr>,
    /// Dynamic client registration (`/register`): `"open"` (default) or `"closed"`
    /// (only `clients` below and Client ID Metadata Documents).
    #[serde(default)]
    pub registration: Option<RegistrationMode>,
    /// Pre-registered OAuth clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Dynamically registered clients unused for this long are forgotten. Default `90d`.
    #[serde(default)]
    pub client_expiry: Option<DurationStr>,
    /// Refuse authorization requests without an RFC 8707 `resource` instead of
    /// issuing a gateway-wide token. Default false (some clients never send it).
    #[serde(default)]
    pub require_resource: bool,
    /// Where clients, consents and refresh tokens are kept: `"sqlite:PATH"`
    /// (default `sqlite:mcpgate.db`, relative to the working directory) or `"memory"`
    /// (lost on restart; for tests).
    #[serde(default)]
    pub storage: Option<String>,
    /// Client ID Metadata Documents (a `client_id` that is an https URL).
    #[serde(default)]
    pub client_metadata_documents: CimdConfig,
    /// Requests per minute per client IP address.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// Key that encrypts per-user tokens at rest (AES-256-GCM): 32 random bytes in
    /// base64 (`openssl rand -base64 32`), best as `{"$env": "MCPGATE_ENCRYPTION_KEY"}`.
    /// Required when a service takes per-user tokens.
    #[serde(default)]
    pub encryption_key: Option<String>,
    /// Earlier keys, still used to decrypt after a rotation (`mcpgate rotate-keys`
    /// re-encrypts everything with the current key).
    #[serde(default)]
    pub previous_encryption_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    Oauth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Closed,
}

/// The identity provider, chosen by `provider`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum IdpConfig {
    /// Users listed here, with argon2id password hashes (`mcpgate hash-password`).
    Local(LocalIdpConfig),
    /// Google accounts (OpenID Connect); restrict with `allowedDomains`.
    Google(GoogleIdpConfig),
    /// Any OpenID Connect provider by its issuer (Auth0, Keycloak, Okta, Entra, Dex).
    Oidc(OidcIdpConfig),
    /// A GitHub OAuth app; restrict with `allowedOrgs` or `allowedEmails`.
    Github(GithubIdpConfig),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalIdpConfig {
    pub users: Vec<LocalUserConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalUserConfig {
    pub email: String,
    /// argon2id hash from `mcpgate hash-password`.
    pub password_hash: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GoogleIdpConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Must be `<baseURL>/oauth/callback` if given (mcp-front's field).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Only for tests against a stand-in provider. Default `https://accounts.google.com`.
    #[serde(default)]
    pub issuer: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcIdpConfig {
    /// The issuer URL, or its discovery URL (`.../.well-known/openid-configuration`).
    #[serde(alias = "discoveryUrl")]
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Default `["openid", "email", "profile"]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The ID token claim holding the user's groups (e.g. `"groups"`), for `allowedGroups`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GithubIdpConfig {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Only for GitHub Enterprise or tests. Default `https://github.com`.
    #[serde(default)]
    pub web_url: Option<String>,
    /// Only for GitHub Enterprise or tests. Default `https://api.github.com`.
    #[serde(default)]
    pub api_url: Option<String>,
}

/// A client registered in the configuration rather than through `/register`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    pub client_id: String,
    /// Absent: a public client (PKCE only). Present: it must authenticate at `/token`.
    #[serde(default)]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Shown on the consent page.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CimdConfig {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allow documents on loopback/private addresses and over plain http. Only for
    /// local development: it lets a client make the gateway fetch internal URLs.
    #[serde(default)]
    pub allow_private_networks: bool,
}

impl Default for CimdConfig {
    fn default() -> Self {
        CimdConfig {
            enabled: true,
            allow_private_networks: false,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// `/token` and `/revoke`. Default 120.
    #[serde(default)]
    pub token: Option<u32>,
    /// `/register`. Default 30.
    #[serde(default)]
    pub register: Option<u32>,
    /// Password attempts at the local login form. Default 10.
    #[serde(default)]
    pub login: Option<u32>,
}
