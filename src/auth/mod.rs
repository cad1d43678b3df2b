//! The OAuth 2.1 authorization server and resource server.
//!
//! mcpgate issues its own tokens for its own services: clients never see the
//! identity provider's tokens, backends never see mcpgate's. Files by concern:
//!
//! - [`metadata`]: the well-known documents (RFC 8414, RFC 9728, OpenID discovery, JWKS).
//! - [`clients`]: who a `client_id` is (configured, registered, or a Client ID
//!   Metadata Document) and `/register` (RFC 7591).
//! - [`flow`]: `/authorize` -> sign-in (local form or upstream provider) ->
//!   `/oauth/callback` -> consent -> 302 back to the client with a code.
//! - [`grant`]: `/token` (code and refresh grants, rotation, reuse detection) and
//!   `/revoke` (RFC 7009).
//! - The resource server (the bearer check in front of every MCP endpoint,
//!   401/403 with `WWW-Authenticate`) is `transport::authenticate`, which uses
//!   [`jwt`] from here.
//! - [`account`]: `/my/consents`, where a person sees and revokes what they allowed.
//! - [`user_tokens`]: each person's own token per service, sealed at rest.
//! - [`jwt`]: access tokens (ES256 JWT, persisted key, JWKS, verification cache).
//! - [`records`]: what is kept in the store.
//! - [`upstream`]: a service's own OAuth ("Connect"), per person.
//! - [`token`], [`cimd`], [`idp`]: the building blocks (typed opaque tokens,
//!   metadata-document fetching with SSRF protection, identity providers); RFC
//!   error codes, redirect URI rules and argon2id live in
//!   [`crate::oauth::error`], [`crate::oauth::redirect`] and
//!   [`crate::util::password`].

pub mod account;
pub mod cimd;
pub mod clients;
pub mod flow;
pub mod grant;
pub mod idp;
pub mod jwt;
pub mod metadata;
mod personal;
mod ratelimit;
pub mod records;
pub mod token;
pub mod upstream;
pub mod user_tokens;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::caller::UserId;
use crate::config::Settings;
use crate::config::auth::{AuthSettings, IdpSettings};
use crate::store::{Store, StoreSpec};
use crate::util::random_id;

/// One authorization and every token refreshed from it; revoked as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyId(String);

impl FamilyId {
    pub fn new(s: impl Into<String>) -> FamilyId {
        FamilyId(s.into())
    }
    pub fn generate() -> FamilyId {
        FamilyId(random_id())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an access token is for: one service, or (when the client named no
/// resource) every service of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Gateway,
    Service(String),
}

/// How people sign in.
pub enum Login {
    Local(Vec<crate::config::auth::LocalUser>),
    Upstream(idp::Provider),
}

pub struct Auth {
    pub settings: AuthSettings,
    /// The gateway's public URL without a trailing slash; also the issuer.
    pub issuer: String,
    base: Url,
    /// The configured services (scopes, per-user token settings, service auths).
    services: Vec<crate::config::Service>,
    /// The aggregated endpoints (name, scopes: every scope its services
    /// require, and the services behind it).
    aggregates: Vec<(String, Vec<String>, Vec<String>)>,
    /// What the gateway is called (`proxy.name`), for the pages people see.
    pub name: String,
    /// Tells open sessions that a person's token for a service changed.
    token_changes: tokio::sync::broadcast::Sender<(UserId, String)>,
    pub store: Store,
    pub keys: jwt::Keys,
    pub login: Login,
    cimd: Option<cimd::CimdFetcher>,
    revoked: RwLock<HashSet<FamilyId>>,
    limits: ratelimit::Limits,
    /// Cookies get `Secure` and the `__Host-` prefix unless the gateway runs on
    /// plain http on loopback (development).
    secure_cookies: bool,
    trusted_proxies: Vec<crate::config::IpRange>,
    /// Seals per-user tokens; `None` when no encryption key is configured.
    sealer: Option<crate::store::sealed::Sealer>,
    /// Messages for the next `/my/tokens` render, by random id (see `flash`).
    flashes: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
}

impl Auth {
    /// Open the store, load (or create) the signing key, discover the identity provider.
    pub async fn start(settings: &Settings) -> anyhow::Result<Option<Arc<Auth>>> {
        let Some(auth) = &settings.auth else {
            return Ok(None);
        };
        let spec = StoreSpec::parse(&auth.storage)
            .map_err(|e| anyhow::anyhow!("proxy.auth.storage: {e}"))?;
        let store = Store::open(&spec).await?;
        Auth::with_store(settings, store).await.map(Some)
    }

    pub async fn with_store(settings: &Settings, store: Store) -> anyhow::Result<Arc<Auth>> {
        let auth = settings
            .auth
            .clone()
            .ok_or_else(|| anyhow::anyhow!("proxy.auth is not configured"))?;
        let issuer = settings.base_url.as_str().trim_end_matches('/').to_string();
        let keys = jwt::Keys::load_or_create(&store, &issuer).await?;
        let login = match &auth.idp {
            IdpSettings::Local { users } => Login::Local(users.clone()),
            IdpSettings::Google {
                issuer,
                client_id,
                client_secret,
            } => Login::Upstream(
                idp::Provider::google(idp::OidcSettings {
                    issuer_url: issuer.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.expose().to_string(),
                    scopes: vec!["openid".into(), "email".into(), "profile".into()],
                    groups_claim: None,
                    google_hosted_domain: google_hint(&auth.policy.domains),
                    allow_insecure_http: Url::parse(issuer)
                        .is_ok_and(|u| crate::util::is_loopback_url(&u)),
                })
                .await
                .map_err(|e| anyhow::anyhow!("proxy.auth.idp (google): {e}"))?,
            ),
            IdpSettings::Oidc {
                issuer,
                client_id,
                client_secret,
                scopes,
                groups_claim,
            } => Login::Upstream(
                idp::Provider::oidc(idp::OidcSettings {
                    issuer_url: issuer.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.expose().to_string(),
                    scopes: scopes.clone(),
                    groups_claim: groups_claim.clone(),
                    google_hosted_domain: None,
                    allow_insecure_http: Url::parse(issuer)
                        .is_ok_and(|u| crate::util::is_loopback_url(&u)),
                })
                .await
                .map_err(|e| anyhow::anyhow!("proxy.auth.idp (oidc): {e}"))?,
            ),
            IdpSettings::Github {
                client_id,
                client_secret,
                web_url,
                api_url,
                read_orgs,
            } => Login::Upstream(idp::Provider::github(idp::GithubSettings {
                client_id: client_id.clone(),
                client_secret: client_secret.expose().to_string(),
                authorize_url: format!("{web_url}/login/oauth/authorize"),
                token_url: format!("{web_url}/login/oauth/access_token"),
                api_url: api_url.clone(),
                read_orgs: *read_orgs,
            })),
        };
        let cimd = auth.cimd_enabled.then(|| {
            cimd::CimdFetcher::new(cimd::CimdPolicy {
                allow_private_networks: auth.cimd_allow_private,
                ..cimd::CimdPolicy::default()
            })
        });
        let revoked = store
            .list::<records::RevokedFamily>()
            .await?
            .into_iter()
            .map(|(k, _)| FamilyId::new(k))
            .collect();
        let secure_cookies = !(settings.base_url.scheme() == "http"
            && settings
                .base_url
                .host_str()
                .is_some_and(crate::util::is_loopback_host));
        let sealer = crate::store::sealed::Sealer::new(
            &auth.encryption_keys.iter().map(|k| k.0).collect::<Vec<_>>(),
        );
        Ok(Arc::new(Auth {
            limits: ratelimit::Limits::new(&auth),
            settings: auth,
            issuer,
            base: settings.base_url.clone(),
            services: settings.services.clone(),
            aggregates: settings
                .aggregate
                .endpoints
                .iter()
                .map(|(name, members)| {
                    let mut scopes: Vec<String> = Vec::new();
                    for m in members {
                        for sc in settings
                            .services
                            .iter()
                            .filter(|s| &s.name == m)
                            .flat_map(|s| &s.required_scopes)
                        {
                            if !scopes.contains(sc) {
                                scopes.push(sc.clone());
                            }
                        }
                    }
                    if scopes.is_empty() {
                        scopes.push("mcp".into());
                    }
                    let members = members.iter().map(|m| m.to_string()).collect();
                    (name.to_string(), scopes, members)
                })
                .collect(),
            name: settings.name.clone(),
            token_changes: tokio::sync::broadcast::channel(64).0,
            store,
            keys,
            login,
            cimd,
            revoked: RwLock::new(revoked),
            secure_cookies,
            trusted_proxies: settings.trusted_proxies.clone(),
            sealer,
            flashes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// The authorization server's routes, relative to the base path.
    pub fn routes<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        Router::new()
            .merge(metadata::routes())
            .route("/authorize", get(flow::authorize))
            .route("/login", get(flow::login_page).post(flow::login_submit))
            .route("/oauth/callback", get(flow::callback))
            .route(
                "/consent",
                get(flow::consent_page).post(flow::consent_submit),
            )
            .route("/logout", post(flow::logout))
            .route("/my/login", get(flow::my_sign_in))
            .route("/my/tokens", get(account::tokens_page))
            .route("/my/tokens/{service}", post(account::save_token))
            .route("/my/tokens/{service}/delete", post(account::delete_token))
            .route("/my/tokens/{service}/connect", post(upstream::connect))
            .route(
                "/my/tokens/{service}/disconnect",
                post(upstream::disconnect),
            )
            .route("/my/oauth/callback", get(upstream::callback))
            .route("/my/consents", get(account::consents_page))
            .route("/my/consents/revoke", post(account::revoke_consent))
            .route("/token", post(grant::token))
            .route("/revoke", post(grant::revoke))
            .route("/register", post(clients::register))
            .with_state(self.clone())
    }

    /// Routes at the origin when the gateway lives under a base path: the
    /// path-inserted well-known documents (RFC 8414 §3.1, RFC 9728 §3.1) and the
    /// endpoints Claude.ai guesses at the origin when metadata is missing.
    pub fn root_routes<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        metadata::root_routes(self.base_path())
            .route("/authorize", get(flow::authorize))
            .route("/token", post(grant::token))
            .route("/register", post(clients::register))
            .with_state(self.clone())
    }

    /// The key rate limits count by: the client's address (see `ratelimit::client_ip`).
    pub fn client_key(
        &self,
        peer: std::net::SocketAddr,
        headers: &axum::http::HeaderMap,
    ) -> String {
        ratelimit::client_ip(peer.ip(), headers, &self.trusted_proxies).to_string()
    }

    /// Leave an audit line for an access token the resource server refused
    /// (at most 10 a minute per client IP). Never the token itself.
    pub fn note_refused_token(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &axum::http::HeaderMap,
        service: &str,
        client_id: Option<&str>,
        reason: &str,
    ) {
        let ip = peer.map_or_else(|| "-".to_string(), |p| self.client_key(p, headers));
        if self.limits.refused_token_log.check(&ip).is_ok() {
            tracing::info!(
                target: "audit",
                ip = ip.as_str(),
                service,
                client_id = client_id.unwrap_or("-"),
                reason,
                "access token refused"
            );
        }
    }

    /// Keep a message for the page a redirect leads to; the URL carries only a
    /// random id, so a crafted link cannot put its own text on the page.
    pub fn flash(&self, message: &str) -> String {
        let id = random_id();
        if let Ok(mut f) = self.flashes.lock() {
            let now = std::time::Instant::now();
            f.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(300));
            if f.len() < 10_000 {
                f.insert(id.clone(), (now, message.chars().take(500).collect()));
            }
        }
        id
    }

    /// The message behind a flash id, once.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.flashes.lock().ok()?.remove(id).map(|(_, m)| m)
    }

    pub fn base_path(&self) -> &str {
        self.base.path().trim_end_matches('/')
    }

    /// Public URL of one of the gateway's paths.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The resource URI of a service (RFC 8707, RFC 9728).
    pub fn resource_url(&self, service: &str) -> String {
        self.url(&crate::config::endpoint_path(service, "mcp"))
    }

    /// The JWT `aud` for an audience.
    pub fn audience_claim(&self, audience: &Audience) -> String {
        match audience {
            Audience::Gateway => self.issuer.clone(),
            Audience::Service(s) => self.resource_url(s),
        }
    }

    /// The scopes a token needs for a service or an aggregated endpoint; `None`
    /// when there is no such thing.
    pub fn required_scopes(&self, service: &str) -> Option<&[String]> {
        self.service(service)
            .map(|s| s.required_scopes.as_slice())
            .or_else(|| {
                self.aggregates
                    .iter()
                    .find(|(n, _, _)| n == service)
                    .map(|(_, s, _)| s.as_slice())
            })
    }

    /// The services behind an aggregated endpoint, if `name` is one.
    pub fn aggregate_members(&self, name: &str) -> Option<&[String]> {
        self.aggregates
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, m)| m.as_slice())
    }

    pub fn service(&self, name: &str) -> Option<&crate::config::Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    pub fn services_needing_tokens(&self) -> impl Iterator<Item = &crate::config::Service> {
        self.services.iter().filter(|s| s.needs_user_token())
    }

    /// A person's token for a service was set or removed: sessions waiting for
    /// it start their backend.
    pub fn user_token_changed(&self, user: &UserId, service: &str) {
        let _ = self.token_changes.send((user.clone(), service.to_string()));
    }

    pub fn token_changes(&self) -> tokio::sync::broadcast::Receiver<(UserId, String)> {
        self.token_changes.subscribe()
    }

    /// Every scope any service requires, plus `offline_access`.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for svc in &self.services {
            for s in &svc.required_scopes {
                if !all.contains(s) {
                    all.push(s.clone());
                }
            }
        }
        all.push("offline_access".into());
        all
    }

    /// Map an RFC 8707 `resource` to an audience. Query strings (ChatGPT adds
    /// some) and a trailing slash are ignored; anything that is not one of this
    /// gateway's resources is refused.
    pub fn parse_resource(&self, text: &str) -> Option<Audience> {
        let mut url = Url::parse(text).ok()?;
        url.set_query(None);
        url.set_fragment(None);
        let normalized = url.as_str().trim_end_matches('/').to_string();
        if normalized == self.issuer {
            return Some(Audience::Gateway);
        }
        let rest = normalized.strip_prefix(&self.issuer)?.strip_prefix('/')?;
        if matches!(rest, "mcp" | "sse") {
            let root = crate::config::AggregateSettings::ROOT;
            self.required_scopes(root)?;
            return Some(Audience::Service(root.to_string()));
        }
        let (service, tail) = rest.split_once('/')?;
        if !matches!(tail, "mcp" | "sse") {
            return None;
        }
        self.required_scopes(service)?;
        Some(Audience::Service(service.to_string()))
    }

    /// The scopes to grant for a request: the known ones asked for; when none of
    /// the service scopes were asked for (ChatGPT sends `openid` or nothing),
    /// what the audience requires (one service's scopes, or every service's).
    pub fn grant_scopes(&self, requested: Option<&str>, audience: &Audience) -> Vec<String> {
        let supported = self.scopes_supported();
        let mut granted: Vec<String> = Vec::new();
        for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            if supported.iter().any(|x| x == s) && !granted.iter().any(|g| g == s) {
                granted.push(s.to_string());
            }
        }
        if !granted.iter().any(|s| s != "offline_access") {
            let defaults: Vec<String> = match audience {
                Audience::Service(name) => self
                    .required_scopes(name)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
                Audience::Gateway => self
                    .scopes_supported()
                    .into_iter()
                    .filter(|s| s != "offline_access")
                    .collect(),
            };
            for (i, s) in defaults.into_iter().enumerate() {
                granted.insert(i, s);
            }
        }
        granted
    }

    pub fn is_revoked(&self, family: &FamilyId) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains(family))
            .unwrap_or(true)
    }

    /// Revoke a token family: its refresh tokens stop working at once, and its
    /// access tokens on their next use. The revocation is kept (in its own
    /// record) until every token the family could hold has expired, whatever
    /// happens to the family's own record.
    pub async fn revoke_family(&self, family: &FamilyId, why: &str) {
        if let Ok(mut r) = self.revoked.write() {
            r.insert(family.clone());
        }
        let record = records::RevokedFamily {
            revoked_at: crate::util::now_unix(),
            reason: why.to_string(),
        };
        if let Err(e) = self
            .store
            .put(family.as_str(), &record, Some(self.family_expiry()))
            .await
        {
            tracing::error!("cannot record a token revocation: {e}");
        }
        if let Ok(Some(mut f)) = self.store.get::<records::Family>(family.as_str()).await
            && f.revoked_at.is_none()
        {
            f.revoked_at = Some(record.revoked_at);
            f.revoked_because = Some(why.to_string());
            let _ = self
                .store
                .put(family.as_str(), &f, Some(self.family_expiry()))
                .await;
        }
        tracing::info!(
            family = family.as_str(),
            reason = why,
            "token family revoked"
        );
    }

    /// A family (and its revocation) must outlive the longest-lived token it
    /// can still hold: a refresh token issued now, plus an access token.
    pub fn family_expiry(&self) -> SystemTime {
        SystemTime::now()
            + self.settings.refresh_ttl
            + self.settings.token_ttl
            + Duration::from_secs(60)
    }

    /// Whether this person may still sign in (checked at sign-in and again at
    /// every refresh, so removing someone from the policy or the local users
    /// ends their access within one access-token lifetime).
    pub fn still_allowed(&self, identity: &idp::Identity) -> Result<(), flow::AccessDenied> {
        if let Login::Local(users) = &self.login
            && identity.provider == "local"
            && !users.iter().any(|u| u.email == identity.email)
        {
            return Err(flow::AccessDenied::LocalUserRemoved);
        }
        flow::allowed(&self.settings.policy, identity)
    }

    /// `Set-Cookie` for one of the gateway's cookies.
    pub fn cookie(&self, name: &str, value: &str, max_age: Duration) -> String {
        if self.secure_cookies {
            format!(
                "__Host-{name}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
                max_age.as_secs()
            )
        } else {
            format!(
                "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
                max_age.as_secs()
            )
        }
    }

    pub fn cookie_name(&self, name: &str) -> String {
        if self.secure_cookies {
            format!("__Host-{name}")
        } else {
            name.to_string()
        }
    }
}

/// Google's `hd` hint, when exactly one domain is allowed (a hint only: the
/// verified `hd` claim is what the policy checks).
fn google_hint(domains: &[String]) -> Option<String> {
    match domains {
        [one] => Some(one.clone()),
        _ => None,
    }
}
