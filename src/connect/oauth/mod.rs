//! The client side of the MCP authorization spec (2025-11-25): discovery from a
//! 401, client registration, the authorization code flow with PKCE, refresh,
//! step-up, all shared through the token cache.
//!
//! Bounds, so a misbehaving server never makes the bridge open browser tabs in a
//! loop: a 401 leads to at most one refresh and one sign-in per request (the
//! transport counts), a token just issued by a sign-in that is refused again is an
//! error, `invalid_client` leads to one re-registration, and a step-up never asks
//! twice for scopes it already asked for.
//!
//! One concern per file: [`discovery`] (from a 401 to the authorization
//! server's metadata), [`registration`] (which client to be), [`grant`] (the
//! interactive sign-in: browser or device grant), [`refresh`]. This file holds
//! [`Auth`] itself, the one entry point of the transport: the tokens in use, the
//! locks, and the decisions between refreshing and signing in (`renew`,
//! `step_up`), and the token cache writes.

mod discovery;
mod grant;
mod refresh;
mod registration;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use url::Url;

use super::browser::BrowserError;
use super::cache::{Cache, CacheError, Client, Entry, Tokens};
use super::trace::Traced;
use super::util::{Challenge, scope_union, scopes_cover};
use crate::oauth::client::{
    self as oauth_client, AuthMethod, Credentials, EndpointError, Grant, OAuthHttp, Secret,
    TokenError, TokenRequest, TokenResponse,
};
use crate::util::now_ms;
use discovery::{Discovery, DiscoveryError};
use grant::GrantError;
use refresh::RefreshError;
use registration::RegistrationError;

/// Why the bridge has no token to send. Each part of the sign-in has its own
/// error; the messages name what failed and what to do, and none holds a token,
/// code, verifier or client secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Browser(#[from] BrowserError),
    #[error(transparent)]
    Insecure(#[from] EndpointError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error(
        "{server} refuses this request for lack of scope ({wanted}), and signing in again already asked for {held}; the account may not be allowed that scope, ask the server's administrator"
    )]
    ScopeNotGranted {
        server: String,
        wanted: String,
        held: String,
    },
    #[error(
        "{server} refuses the token its authorization server issued moments ago; the account may lack access to this server, or the server and its authorization server disagree (check the server's logs)"
    )]
    FreshTokenRefused { server: String },
}

/// The HTTP client's timeout (token requests included).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest token endpoint answer read: tokens are a few kB at most.
const MAX_TOKEN_ANSWER: usize = 1024 * 1024;

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_metadata_url: Option<String>,
    pub callback_port: Option<u16>,
    pub no_browser: bool,
    pub allow_http: bool,
    pub login_timeout: Duration,
}

/// Token requests recorded in `--trace-file` like every other request.
fn traced_token_request(
    request: reqwest::RequestBuilder,
) -> Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>> {
    Box::pin(request.traced("oauth.token"))
}

pub struct Auth {
    http: reqwest::Client,
    /// The same client, for the token and device authorization endpoints.
    token_http: OAuthHttp,
    server: Url,
    cache: Cache,
    opts: Options,
    /// The tokens in use; read on every request without waiting for a sign-in.
    current: std::sync::Mutex<Option<Tokens>>,
    /// Held while discovering, refreshing or signing in: one at a time per process
    /// (the cache's file lock does the same across processes).
    inner: Mutex<Inner>,
    /// Whether the server has accepted anything since the last interactive sign-in.
    login_accepted: AtomicBool,
}

#[derive(Default)]
struct Inner {
    discovery: Option<Discovery>,
    /// The access token the last interactive sign-in of this process produced.
    fresh_from_login: Option<String>,
}

impl Auth {
    pub fn new(server: Url, cache: Cache, opts: Options) -> Result<Auth, AuthError> {
        let http = reqwest::Client::builder()
            // Metadata must be served directly; a redirect on a token request
            // could carry a code or secret to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AuthError::HttpClient)?;
        let entry = cache.load();
        let tokens = entry.tokens.filter(|_| entry.server == server.as_str());
        let token_http = OAuthHttp::with_client(http.clone(), HTTP_TIMEOUT, MAX_TOKEN_ANSWER)
            .sending_with(traced_token_request);
        Ok(Auth {
            http,
            token_http,
            server,
            cache,
            opts,
            current: std::sync::Mutex::new(tokens),
            inner: Mutex::new(Inner::default()),
            login_accepted: AtomicBool::new(true),
        })
    }

    fn current(&self) -> Option<Tokens> {
        self.current.lock().map(|c| c.clone()).unwrap_or(None)
    }

    fn set_current(&self, tokens: Option<Tokens>) {
        if let Ok(mut c) = self.current.lock() {
            *c = tokens;
        }
    }

    /// The server accepted a request made with our token.
    pub fn accepted(&self) {
        self.login_accepted.store(true, Ordering::SeqCst);
    }

    /// The access token held now, as it is (for the final DELETE).
    pub fn bearer_cached(&self) -> Option<String> {
        self.current().map(|t| t.access_token)
    }

    /// The access token to send now, refreshed first when it is about to expire.
    /// `None` until the server asks for one.
    pub async fn bearer(&self) -> Result<Option<String>, AuthError> {
        match self.current() {
            None => Ok(None),
            Some(t) if !t.needs_refresh(now_ms()) => Ok(Some(t.access_token)),
            Some(t) => {
                self.renew(Some(&t.access_token), None, true).await?;
                Ok(self.current().map(|t| t.access_token))
            }
        }
    }

    /// The server answered 401 to a request sent with `sent`.
    pub async fn unauthorized(
        &self,
        sent: Option<&str>,
        challenge: Option<Challenge>,
    ) -> Result<(), AuthError> {
        self.renew(sent, challenge, false).await
    }

    /// The server answered 403 `insufficient_scope`: sign in again asking for the
    /// union of the scopes held and the scopes it names.
    pub async fn step_up(&self, sent: Option<&str>, challenge: Challenge) -> Result<(), AuthError> {
        let mut inner = self.inner.lock().await;
        let current = self.current();
        if current.as_ref().map(|t| t.access_token.as_str()) != sent && current.is_some() {
            return Ok(());
        }
        let held = current.as_ref().and_then(|t| t.scope.clone());
        if scopes_cover(held.as_deref(), challenge.scope.as_deref()) {
            return Err(AuthError::ScopeNotGranted {
                server: self.server.to_string(),
                wanted: challenge
                    .scope
                    .unwrap_or_else(|| "no scope named".to_string()),
                held: held.unwrap_or_else(|| "no scope".to_string()),
            });
        }
        let wanted = scope_union(held.as_deref(), challenge.scope.as_deref());
        eprintln!(
            "mcpgate connect: {} needs more permissions ({}); signing in again",
            self.server,
            wanted.as_deref().unwrap_or("")
        );
        let _flock = self.cache.lock().await?;
        self.login(&mut inner, challenge, wanted).await
    }

    async fn renew(
        &self,
        sent: Option<&str>,
        challenge: Option<Challenge>,
        expiring: bool,
    ) -> Result<(), AuthError> {
        let mut inner = self.inner.lock().await;
        let usable =
            |t: &Tokens| Some(t.access_token.as_str()) != sent && !t.needs_refresh(now_ms());
        if self.current().as_ref().is_some_and(usable) {
            return Ok(()); // another request of ours renewed it while we waited
        }
        // A token from a sign-in that the server never accepted: signing in again
        // would only open another browser tab for the same answer.
        if !expiring
            && sent.is_some()
            && inner.fresh_from_login.as_deref() == sent
            && !self.login_accepted.load(Ordering::SeqCst)
        {
            return Err(AuthError::FreshTokenRefused {
                server: self.server.to_string(),
            });
        }
        let _flock = self.cache.lock().await?;
        // Another process may have refreshed or signed in while we waited.
        let entry = self.cache.load();
        if entry.server == self.server.as_str()
            && let Some(t) = entry.tokens.clone().filter(|t| usable(t))
        {
            self.set_current(Some(t));
            return Ok(());
        }
        let challenge = challenge.unwrap_or_default();
        // The cache is written under the lock, so it is at least as new as what
        // this process holds: refreshing with an older, rotated refresh token
        // would make the server revoke the whole family.
        let held = entry
            .tokens
            .clone()
            .filter(|_| entry.server == self.server.as_str())
            .or(self.current());
        let held_scope = held.as_ref().and_then(|t| t.scope.clone());
        if let Some(held) = held.filter(|t| t.refresh_token.is_some()) {
            let d = self.discover(&mut inner, &challenge).await?;
            match self.refresh(&d, &held).await {
                Ok(()) => return Ok(()),
                Err(e) if !e.sign_in_may_help() => return Err(e.into()),
                Err(e) => {
                    if let RefreshError::Token(t) = &e
                        && t.oauth_error() == Some("invalid_client")
                    {
                        self.forget_client();
                    }
                    eprintln!("mcpgate connect: {e}; signing in again");
                }
            }
        }
        let scope = challenge.scope.clone().or(held_scope);
        self.login(&mut inner, challenge, scope).await
    }

    fn forget_client(&self) {
        let mut entry = self.cache.load();
        entry.client = None;
        entry.tokens = None;
        entry.server = self.server.to_string();
        let _ = self.cache.save(&entry);
    }

    /// Headless, and the server offers the device authorization grant (RFC 8628):
    /// better than pasting URLs around.
    fn device_flow(&self, d: &Discovery) -> bool {
        self.opts.no_browser && d.meta.device_authorization_endpoint.is_some()
    }

    fn store(&self, tokens: Tokens) -> Result<(), CacheError> {
        let mut entry = self.cache.load();
        if entry.server != self.server.as_str() {
            entry = Entry {
                server: self.server.to_string(),
                ..Entry::default()
            };
        }
        entry.tokens = Some(tokens.clone());
        self.cache.save(&entry)?;
        self.set_current(Some(tokens));
        Ok(())
    }

    /// Redeem a grant at the token endpoint, for the resource this bridge serves.
    async fn request_token(
        &self,
        d: &Discovery,
        client: &Client,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, TokenError> {
        let request = TokenRequest {
            endpoint: &d.token_endpoint,
            client: credentials(client),
            grant,
            resource: Some(&d.resource),
        };
        oauth_client::request_token(&self.token_http, &request).await
    }
}

/// How a cached client authenticates: as registered, and as a public client
/// when it has no secret.
fn credentials(client: &Client) -> Credentials<'_> {
    Credentials {
        client_id: &client.client_id,
        client_secret: client.client_secret.as_deref(),
        method: AuthMethod::from_name(&client.auth_method),
    }
}

/// What the bridge keeps of a token response. `old_refresh`: the refresh token
/// just used, kept when the server did not rotate it.
fn tokens_from(
    answer: TokenResponse,
    d: &Discovery,
    client: &Client,
    scope: Option<String>,
    old_refresh: Option<String>,
) -> Tokens {
    let lifetime = answer.expires_in.map(|s| s.saturating_mul(1000));
    Tokens {
        access_token: answer.access_token.into_inner(),
        refresh_token: answer.refresh_token.map(Secret::into_inner).or(old_refresh),
        expires_at: lifetime.map(|l| now_ms().saturating_add(l)),
        lifetime,
        scope,
        issuer: d.meta.issuer.clone(),
        client_id: client.client_id.clone(),
        resource: d.resource.clone(),
    }
}
