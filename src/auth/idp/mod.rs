//! Upstream identity providers: who the person at the browser is.
//!
//! The gateway is its own OAuth 2.1 authorization server, but it does not keep
//! passwords (apart from the `local` provider): it sends the browser to Google,
//! to any OpenID Connect provider found by discovery (Auth0, Keycloak, Okta,
//! Entra, Dex), or to a GitHub OAuth app, and turns what comes back into an
//! [`Identity`]. A provider does two things:
//!
//! - [`Provider::start`] builds the URL to send the browser to, with PKCE (S256)
//!   and, for OpenID Connect, a nonce, and returns a [`PendingLogin`] that the
//!   caller keeps server side, keyed by `state`, until the callback.
//! - [`Provider::finish`] redeems the callback's `code` at the provider's token
//!   endpoint (proving PKCE and the client secret) and verifies what it gets.
//!
//! The caller owns everything around that: storing the pending login, checking
//! `state`, and deciding whether the [`Identity`] may in (domains, orgs, groups,
//! emails).
//!
//! For OpenID Connect the identity comes from the ID token, verified: signature
//! against the provider's published keys (JWKS), issuer, audience, `azp`,
//! expiry, and the nonce of this very login. A peer gateway took the identity
//! from the userinfo endpoint alone, without a nonce, and ignored
//! `email_verified`: a userinfo answer is not bound to the login that asked for
//! it, so a code or token obtained elsewhere could be replayed into someone
//! else's login, and an account that merely *claims* an email address (several
//! providers let users set an unverified one) was let in as its owner. Here the
//! userinfo endpoint is only consulted for claims the verified ID token lacks,
//! only with the access token issued together with it, and only if it speaks
//! about the same `sub`; and an email address counts only when the provider says
//! it verified it. GitHub has no ID token: its identity is read from the API
//! with the token just issued, and the email address is the primary one, and
//! only if GitHub marks it verified.
//!
//! Secrets (client secrets, codes, tokens, nonces, PKCE verifiers) never appear
//! in `Debug` output, logs or error messages.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the settings, [`Provider`] (start, finish), [`PendingLogin`], [`Identity`] |
//! | `oidc` | Google and OpenID Connect: discovery, ID token verification, userinfo |
//! | `claims` | what an OpenID Connect claim means (groups, `email_verified`, names) |
//! | `github` | GitHub: the API's user, verified primary email, organizations |
//! | `http` | endpoint URLs, the one HTTP client for providers, the code exchange |
//! | `error` | [`IdpError`] and [`IdTokenProblem`] |

mod claims;
mod error;
mod github;
mod http;
mod oidc;

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::oauth::client::{Pkce, random_secret};

pub use error::{IdTokenProblem, IdpError};
pub use github::Github;
pub use oidc::Oidc;

/// Google's issuer, for [`Provider::google`] when settings leave it empty.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GITHUB_AUTHORIZE_URL: &str = "https://github.com/login/oauth/authorize";
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// Settings for Google and for any OpenID Connect provider, already resolved
/// from the configuration.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer; discovery is at `<issuer>/.well-known/openid-configuration`.
    /// The discovery URL itself is accepted too.
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Empty means `["openid", "email", "profile"]`; `openid` is always added.
    pub scopes: Vec<String>,
    /// The claim holding the user's groups (e.g. `groups`, or a dotted path such
    /// as `realm_access.roles`): read from the ID token, falling back to userinfo.
    pub groups_claim: Option<String>,
    /// Google only: sent as the `hd` hint, which only preselects accounts in the
    /// chooser. It binds nothing: the access policy must check [`Identity::domain`].
    pub google_hosted_domain: Option<String>,
    /// Tests only: allow a plain-http issuer and endpoints on loopback.
    pub allow_insecure_http: bool,
}

impl OidcSettings {
    pub fn new(
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> OidcSettings {
        OidcSettings {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: Vec::new(),
            groups_claim: None,
            google_hosted_domain: None,
            allow_insecure_http: false,
        }
    }
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("google_hosted_domain", &self.google_hosted_domain)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Settings for a GitHub (or GitHub Enterprise) OAuth app.
#[derive(Clone)]
pub struct GithubSettings {
    pub client_id: String,
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
    pub api_url: String,
    /// Ask for `read:org` and report the user's organizations in [`Identity::orgs`].
    pub read_orgs: bool,
}

impl GithubSettings {
    /// Settings for github.com.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> GithubSettings {
        GithubSettings {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authorize_url: GITHUB_AUTHORIZE_URL.into(),
            token_url: GITHUB_TOKEN_URL.into(),
            api_url: GITHUB_API_URL.into(),
            read_orgs: false,
        }
    }
}

impl fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .field("read_orgs", &self.read_orgs)
            .finish()
    }
}

/// An upstream identity provider, ready to use.
#[derive(Debug, Clone)]
pub enum Provider {
    Google(Oidc),
    Oidc(Oidc),
    Github(Github),
}

impl Provider {
    /// Google, by discovery (an empty `issuer_url` means [`GOOGLE_ISSUER`]).
    /// Its `hd` claim becomes [`Identity::domain`].
    pub async fn google(mut settings: OidcSettings) -> Result<Provider, IdpError> {
        if settings.issuer_url.trim().is_empty() {
            settings.issuer_url = GOOGLE_ISSUER.to_string();
        }
        Ok(Provider::Google(Oidc::discover(settings, true).await?))
    }

    /// Any OpenID Connect provider. Runs discovery now, so that a wrong issuer
    /// URL stops the gateway at startup rather than at the first login.
    pub async fn oidc(settings: OidcSettings) -> Result<Provider, IdpError> {
        Ok(Provider::Oidc(Oidc::discover(settings, false).await?))
    }

    pub fn github(settings: GithubSettings) -> Provider {
        Provider::Github(Github::new(settings))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Google(_) => "google",
            Provider::Oidc(_) => "oidc",
            Provider::Github(_) => "github",
        }
    }

    /// For the login page ("Sign in with ...").
    pub fn display_name(&self) -> &'static str {
        match self {
            Provider::Google(_) => "Google",
            Provider::Oidc(_) => "your identity provider",
            Provider::Github(_) => "GitHub",
        }
    }

    /// Begin a login: the URL to send the browser to, and what must be kept
    /// (server side, keyed by `state`) until the callback.
    pub fn start(&self, redirect_uri: &str, state: &str) -> Result<(Url, PendingLogin), IdpError> {
        if state.is_empty() {
            return Err(IdpError::Config("the login state must not be empty".into()));
        }
        Url::parse(redirect_uri)
            .map_err(|e| IdpError::Config(format!("redirect URI {redirect_uri:?}: {e}")))?;
        let pkce = Pkce::generate();
        match self {
            Provider::Google(o) | Provider::Oidc(o) => {
                let nonce = random_secret();
                let url = o.authorize_url(redirect_uri, state, &nonce, &pkce.challenge);
                Ok((
                    url,
                    PendingLogin::new(self.kind(), Some(nonce), pkce.verifier.into_inner()),
                ))
            }
            Provider::Github(g) => {
                let url = g.authorize_url(redirect_uri, state, &pkce.challenge)?;
                Ok((
                    url,
                    PendingLogin::new(self.kind(), None, pkce.verifier.into_inner()),
                ))
            }
        }
    }

    /// Finish a login from the callback's `code`, verifying everything the
    /// provider says before believing it.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        pending: PendingLogin,
    ) -> Result<Identity, IdpError> {
        if pending.provider != self.kind() {
            return Err(IdpError::WrongProvider {
                started: pending.provider,
                this: self.kind(),
            });
        }
        if code.is_empty() {
            return Err(IdpError::ProviderRefused {
                error: "invalid_request".into(),
                description: Some("the callback carried no authorization code".into()),
            });
        }
        match self {
            Provider::Google(o) | Provider::Oidc(o) => {
                let Some(nonce) = pending.nonce.as_deref() else {
                    return Err(IdpError::InvalidIdToken(IdTokenProblem::Nonce));
                };
                o.finish(
                    self.kind(),
                    redirect_uri,
                    code,
                    nonce,
                    &pending.pkce_verifier,
                )
                .await
            }
            Provider::Github(g) => g.finish(redirect_uri, code, &pending.pkce_verifier).await,
        }
    }
}

/// What a login in progress needs at its callback. The caller stores it (it is
/// serializable) and must treat it as a secret: `Debug` redacts it.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    provider: String,
    /// OpenID Connect only: binds the ID token to this login.
    nonce: Option<String>,
    /// Proves to the provider that the code is redeemed by whoever started the login.
    pkce_verifier: String,
}

impl PendingLogin {
    fn new(provider: &str, nonce: Option<String>, pkce_verifier: String) -> PendingLogin {
        PendingLogin {
            provider: provider.to_string(),
            nonce,
            pkce_verifier,
        }
    }

    /// The [`Provider::kind`] that started this login.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("provider", &self.provider)
            .field("nonce", &self.nonce.as_ref().map(|_| REDACTED))
            .field("pkce_verifier", &REDACTED)
            .finish()
    }
}

/// Who logged in, as the provider vouched for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    /// [`Provider::kind`].
    pub provider: String,
    /// The provider's stable id for the account: OIDC `sub`, GitHub numeric id.
    pub subject: String,
    /// Verified by the provider; lowercased.
    pub email: String,
    pub name: Option<String>,
    /// Google's `hd` claim (the Workspace domain), lowercased. Never derived from
    /// the email address: a consumer Google account can be registered with an
    /// address at any domain, so an address's domain proves no membership.
    pub domain: Option<String>,
    pub groups: Vec<String>,
    /// GitHub organization logins, lowercased.
    pub orgs: Vec<String>,
}

const REDACTED: &str = "<redacted>";

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway holds providers in shared state and awaits them in handlers.
    #[allow(dead_code)]
    fn providers_and_their_futures_are_send(provider: &Provider, pending: PendingLogin) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        send_sync(provider);
        send(&provider.finish("", "", pending));
        send(&Provider::oidc(OidcSettings::new("", "", "")));
        send(&Provider::google(OidcSettings::new("", "", "")));
    }
}
