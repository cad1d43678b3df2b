//! `proxy.auth`: the authorization server's settings (identity provider, who may
//! sign in, token lifetimes, client registration, storage).
//!
//! The file shape (`AuthConfig`, also the JSON Schema) is validated into
//! [`AuthSettings`], which is what the `auth` module runs with. Secrets become
//! [`Secret`], whose `Debug` never prints them.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::{DurationStr, Problem};
use crate::util::is_loopback_host;
use crate::util::password;

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

impl AuthConfig {
    pub(super) fn validate(
        self,
        base_url: Option<&Url>,
        problems: &mut Vec<Problem>,
    ) -> Option<AuthSettings> {
        let before = problems.len();
        if let Some(b) = base_url
            && b.scheme() != "https"
            && !b.host_str().is_some_and(is_loopback_host)
        {
            problems.push(Problem {
                path: "proxy.baseURL".into(),
                message: format!(
                    "must be an https URL when proxy.auth is set (tokens and sign-in cookies must not cross the network in clear); {b} is plain http to a non-loopback host. Put mcpgate behind a TLS-terminating proxy and set baseURL to its https URL"
                ),
            });
        }
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                path: format!("proxy.auth.{field}"),
                message,
            })
        };
        let callback = base_url.map(|b| {
            let mut u = b.clone();
            u.set_path(&format!(
                "{}/oauth/callback",
                b.path().trim_end_matches('/')
            ));
            u.to_string()
        });
        let mut check_redirect = |field: &str, given: &Option<String>| {
            if let (Some(given), Some(expected)) = (given, &callback)
                && given.trim_end_matches('/') != expected.trim_end_matches('/')
            {
                problem(
                    field,
                    format!(
                        "is {given:?} but mcpgate receives sign-ins at {expected:?}; register that URL at the identity provider and set it here (or remove this field)"
                    ),
                );
            }
        };
        let mut allow_all_known_users = false;
        let idp = match self.idp {
            IdpConfig::Local(local) => {
                let mut users = Vec::new();
                if local.users.is_empty() {
                    problem(
                        "idp.users",
                        "the local provider needs at least one user".into(),
                    );
                }
                for (i, u) in local.users.into_iter().enumerate() {
                    let email = u.email.trim().to_ascii_lowercase();
                    if !email.contains('@') {
                        problem(
                            &format!("idp.users[{i}].email"),
                            format!("{:?} is not an email address", u.email),
                        );
                    }
                    if !password::is_valid_hash(&u.password_hash) {
                        problem(
                            &format!("idp.users[{i}].passwordHash"),
                            "is not an argon2id hash; create one with `mcpgate hash-password`"
                                .into(),
                        );
                    }
                    users.push(LocalUser {
                        email,
                        password_hash: u.password_hash,
                        name: u.name,
                        groups: u.groups,
                    });
                }
                allow_all_known_users = true;
                IdpSettings::Local { users }
            }
            IdpConfig::Google(g) => {
                check_redirect("idp.redirectUri", &g.redirect_uri);
                IdpSettings::Google {
                    issuer: g
                        .issuer
                        .unwrap_or_else(|| "https://accounts.google.com".into()),
                    client_id: g.client_id,
                    client_secret: Secret(g.client_secret),
                }
            }
            IdpConfig::Oidc(o) => {
                check_redirect("idp.redirectUri", &o.redirect_uri);
                let issuer = o
                    .issuer
                    .trim_end_matches('/')
                    .trim_end_matches("/.well-known/openid-configuration")
                    .to_string();
                match Url::parse(&issuer) {
                    Ok(u)
                        if u.scheme() == "https" || u.host_str().is_some_and(is_loopback_host) => {}
                    _ => problem(
                        "idp.issuer",
                        format!("{:?} is not an https issuer URL", o.issuer),
                    ),
                }
                IdpSettings::Oidc {
                    issuer,
                    client_id: o.client_id,
                    client_secret: Secret(o.client_secret),
                    scopes: if o.scopes.is_empty() {
                        vec!["openid".into(), "email".into(), "profile".into()]
                    } else {
                        o.scopes
                    },
                    groups_claim: o.groups_claim,
                }
            }
            IdpConfig::Github(g) => {
                check_redirect("idp.redirectUri", &g.redirect_uri);
                IdpSettings::Github {
                    client_id: g.client_id,
                    client_secret: Secret(g.client_secret),
                    web_url: g
                        .web_url
                        .unwrap_or_else(|| "https://github.com".into())
                        .trim_end_matches('/')
                        .into(),
                    api_url: g
                        .api_url
                        .unwrap_or_else(|| "https://api.github.com".into())
                        .trim_end_matches('/')
                        .into(),
                    read_orgs: !self.allowed_orgs.is_empty(),
                }
            }
        };
        match &idp {
            IdpSettings::Google {
                client_id,
                client_secret,
                ..
            }
            | IdpSettings::Oidc {
                client_id,
                client_secret,
                ..
            }
            | IdpSettings::Github {
                client_id,
                client_secret,
                ..
            } => {
                if client_id.trim().is_empty() {
                    problem(
                        "idp.clientId",
                        "is empty; set the OAuth client id the identity provider gave you".into(),
                    );
                }
                if client_secret.expose().is_empty() {
                    problem("idp.clientSecret", "is empty; set the client secret the identity provider gave you (best as {\"$env\": \"VAR\"})".into());
                }
            }
            IdpSettings::Local { .. } => {}
        }
        let lower = |v: Vec<String>| {
            v.into_iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let policy = AccessPolicy {
            domains: lower(self.allowed_domains),
            emails: lower(self.allowed_emails),
            orgs: lower(self.allowed_orgs),
            groups: self.allowed_groups,
            allow_all_known_users,
        };
        if !policy.allow_all_known_users
            && policy.domains.is_empty()
            && policy.emails.is_empty()
            && policy.orgs.is_empty()
            && policy.groups.is_empty()
        {
            problem(
                "",
                format!(
                    "nobody may sign in: with the {} provider set allowedDomains, allowedEmails, allowedOrgs or allowedGroups (mcpgate denies by default)",
                    idp.kind()
                ),
            );
        }
        if !policy.orgs.is_empty() && !matches!(idp, IdpSettings::Github { .. }) {
            problem("allowedOrgs", "only applies to the github provider".into());
        }
        let mut clients = Vec::new();
        for (i, c) in self.clients.into_iter().enumerate() {
            if c.client_id.trim().is_empty() || c.client_id.len() > 200 {
                problem(
                    &format!("clients[{i}].clientId"),
                    "must be 1-200 characters".into(),
                );
            }
            if c.redirect_uris.is_empty() {
                problem(
                    &format!("clients[{i}].redirectUris"),
                    "needs at least one redirect URI".into(),
                );
            }
            for (j, r) in c.redirect_uris.iter().enumerate() {
                if let Err(e) = crate::oauth::redirect::RedirectUri::register(r) {
                    problem(
                        &format!("clients[{i}].redirectUris[{j}]"),
                        e.description.to_string(),
                    );
                }
            }
            if c.secret_is_weak() {
                problem(
                    &format!("clients[{i}].clientSecret"),
                    "must be at least 16 characters".into(),
                );
            }
            clients.push(StaticClient {
                client_id: c.client_id,
                secret: c.client_secret.map(Secret),
                redirect_uris: c.redirect_uris,
                name: c.name,
            });
        }
        let mut encryption_keys = Vec::new();
        let key_texts = self
            .encryption_key
            .iter()
            .map(|k| ("encryptionKey".to_string(), k))
            .chain(
                self.previous_encryption_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("previousEncryptionKeys[{i}]"), k)),
            );
        for (field, text) in key_texts {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()));
            match decoded
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            {
                Some(k) => encryption_keys.push(Secret32(k)),
                None => problem(
                    &field,
                    "must be 32 bytes in base64 (generate one with `openssl rand -base64 32`)"
                        .into(),
                ),
            }
        }
        if self.encryption_key.is_none() && !self.previous_encryption_keys.is_empty() {
            problem("encryptionKey", "is required when previousEncryptionKeys is set (it is the key new values are encrypted with)".into());
        }
        let d = |v: Option<DurationStr>, default: Duration| v.map_or(default, |d| d.0);
        const DAY: u64 = 24 * 3600;
        let settings = AuthSettings {
            idp,
            policy,
            token_ttl: d(self.token_ttl, Duration::from_secs(3600)),
            refresh_ttl: d(self.refresh_token_ttl, Duration::from_secs(30 * DAY)),
            refresh_grace: d(self.refresh_grace, Duration::from_secs(30)),
            login_ttl: d(self.login_ttl, Duration::from_secs(12 * 3600)),
            client_expiry: d(self.client_expiry, Duration::from_secs(90 * DAY)),
            registration_open: self.registration != Some(RegistrationMode::Closed),
            clients,
            require_resource: self.require_resource,
            storage: self.storage.unwrap_or_else(|| "sqlite:mcpgate.db".into()),
            cimd_enabled: self.client_metadata_documents.enabled,
            cimd_allow_private: self.client_metadata_documents.allow_private_networks,
            rate_token: self.rate_limits.token.unwrap_or(120),
            rate_register: self.rate_limits.register.unwrap_or(30),
            rate_login: self.rate_limits.login.unwrap_or(10),
            encryption_keys,
        };
        for (field, v) in [
            ("tokenTtl", settings.token_ttl),
            ("refreshTokenTtl", settings.refresh_ttl),
            ("loginTtl", settings.login_ttl),
            ("clientExpiry", settings.client_expiry),
        ] {
            if v.as_secs() < 1 {
                problems.push(Problem {
                    path: format!("proxy.auth.{field}"),
                    message: "must be at least one second".into(),
                });
            }
        }
        for (field, v) in [
            ("rateLimits.token", settings.rate_token),
            ("rateLimits.register", settings.rate_register),
            ("rateLimits.login", settings.rate_login),
        ] {
            if v == 0 {
                problems.push(Problem {
                    path: format!("proxy.auth.{field}"),
                    message: "must be at least 1 (requests per minute)".into(),
                });
            }
        }
        (problems.len() == before).then_some(settings)
    }
}

impl ClientConfig {
    fn secret_is_weak(&self) -> bool {
        self.client_secret.as_ref().is_some_and(|s| s.len() < 16)
    }
}
