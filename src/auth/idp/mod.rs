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

mod github;
mod oidc;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

pub use github::Github;
pub use oidc::Oidc;

/// Google's issuer, for [`Provider::google`] when settings leave it empty.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GITHUB_AUTHORIZE_URL: &str = "https://github.com/login/oauth/authorize";
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// How long one request to a provider may take. A login is interactive: a
/// provider that has not answered in this time is better reported than waited on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a provider (discovery documents and JWKS are a
/// few kB); a broken or hostile endpoint must not make us buffer without end.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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
                    PendingLogin::new(self.kind(), Some(nonce), pkce.verifier),
                ))
            }
            Provider::Github(g) => {
                let url = g.authorize_url(redirect_uri, state, &pkce.challenge)?;
                Ok((url, PendingLogin::new(self.kind(), None, pkce.verifier)))
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

/// Why a login could not be completed. Messages are meant for the person or
/// the administrator, and never contain codes, tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The provider could not be discovered or its metadata is unusable.
    #[error("OpenID Connect discovery at {url} failed: {reason}")]
    Discovery { url: String, reason: String },
    /// The settings cannot work.
    #[error("identity provider configuration: {0}")]
    Config(String),
    /// The provider's token endpoint refused the code; `error` is its OAuth
    /// error code (e.g. `invalid_grant`).
    #[error(
        "the identity provider refused the login: {error}{}",
        describe(description)
    )]
    ProviderRefused {
        error: String,
        description: Option<String>,
    },
    #[error("the identity provider's ID token was rejected: {0}")]
    InvalidIdToken(IdTokenProblem),
    #[error("the identity provider did not verify this email address")]
    EmailNotVerified,
    #[error("the identity provider did not share an email address for this account")]
    NoEmail,
    /// The provider answered, but not as the protocol says it should.
    #[error("the identity provider's answer from {url} was not usable: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("could not reach the identity provider at {url}: {reason}")]
    Network { url: String, reason: String },
    /// The pending login belongs to another provider (configuration changed
    /// during the login, or a mixed-up callback).
    #[error("this login was started with the {started} provider, not {this}")]
    WrongProvider { started: String, this: &'static str },
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// What was wrong with an ID token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenProblem {
    #[error("the token response had no ID token (was the openid scope granted?)")]
    Missing,
    #[error("it is not a well-formed signed JWT")]
    Malformed,
    #[error("it is signed with {0}, which is not accepted")]
    Algorithm(String),
    #[error("it is signed with a key the provider does not publish")]
    UnknownKey,
    #[error("its signature does not verify with the provider's published key")]
    Signature,
    #[error("it was issued by another issuer than the configured one")]
    Issuer,
    #[error("it was issued to another client (its audience is not this client id)")]
    Audience,
    #[error("its authorized party (azp) is another client")]
    AuthorizedParty,
    #[error("its nonce does not match this login")]
    Nonce,
    #[error("it has expired (is this server's clock right?)")]
    Expired,
    #[error("it was issued in the future (is this server's clock right?)")]
    IssuedInFuture,
    #[error("it has no valid {0} claim")]
    MissingClaim(String),
}

const REDACTED: &str = "<redacted>";

/// 256 random bits, base64url: nonces and PKCE verifiers (43 characters, within
/// RFC 7636's 43..=128).
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn generate() -> Pkce {
        let verifier = random_secret();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// Parse an endpoint URL a provider or the configuration gave, refusing plain
/// http except on loopback when allowed: every one of them carries a secret
/// (client secret, code, token) or decides whose keys are trusted.
fn endpoint_url(what: &str, text: &str, allow_loopback_http: bool) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("{what} {text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{what} {url} must use https (plain http is only for tests on loopback)"
            ));
        }
        other => return Err(format!("{what} {url} has unsupported scheme {other:?}")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} {url} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{what} must not carry credentials in the URL"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A URL as shown in errors: no query or fragment, which is where a
/// misconfigured URL might carry something secret.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The HTTP client for talking to providers. Never follows redirects: a
/// redirect from a token endpoint could carry the client secret and code to
/// another host, and a provider's endpoints are known, not discovered by hops.
#[derive(Clone)]
struct UpstreamHttp {
    /// Building can fail only if TLS cannot be set up; that is reported at the
    /// first request instead of panicking in an infallible constructor.
    client: Result<reqwest::Client, String>,
}

/// An HTTP response as read: status, content type, body (capped).
struct Answer {
    status: reqwest::StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn is_json(&self) -> bool {
        let media = self
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media == "application/json" || media.ends_with("+json")
    }
}

impl UpstreamHttp {
    fn new() -> UpstreamHttp {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not set up the HTTPS client: {}", error_chain(&e)));
        UpstreamHttp { client }
    }

    fn client(&self) -> Result<&reqwest::Client, IdpError> {
        self.client
            .as_ref()
            .map_err(|reason| IdpError::Config(reason.clone()))
    }

    /// Send and read the whole answer (up to [`MAX_RESPONSE_BYTES`]).
    async fn send(&self, url: &Url, request: reqwest::RequestBuilder) -> Result<Answer, IdpError> {
        let network = |e: reqwest::Error| IdpError::Network {
            url: shown(url),
            reason: network_reason(e),
        };
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(IdpError::InvalidResponse {
                    url: shown(url),
                    reason: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    async fn get_json(
        &self,
        url: &Url,
        bearer: Option<&str>,
        accept: &'static str,
    ) -> Result<Answer, IdpError> {
        let mut request = self
            .client()?
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static(accept));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(url, request).await
    }

    /// The adapter `openidconnect` needs (it has no HTTP client of its own when
    /// built without default features).
    async fn execute(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, UpstreamHttpError> {
        let client = self
            .client()
            .map_err(|e| UpstreamHttpError(e.to_string()))?;
        let (parts, body) = request.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| UpstreamHttpError(format!("bad URL: {e}")))?;
        let builder = client
            .request(parts.method, url.clone())
            .headers(parts.headers)
            .body(body);
        let answer = self.send(&url, builder).await.map_err(|e| match e {
            // The caller names the URL already.
            IdpError::Network { reason, .. } => {
                UpstreamHttpError(format!("could not reach it: {reason}"))
            }
            other => UpstreamHttpError(other.to_string()),
        })?;
        let mut response = openidconnect::http::Response::builder().status(answer.status);
        if !answer.content_type.is_empty() {
            response = response.header(CONTENT_TYPE, answer.content_type);
        }
        response
            .body(answer.body)
            .map_err(|e| UpstreamHttpError(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UpstreamHttpError(String);

impl<'c> openidconnect::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = UpstreamHttpError;
    type Future = Pin<
        Box<
            dyn Future<Output = Result<openidconnect::HttpResponse, UpstreamHttpError>> + Send + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // hyper and reqwest often repeat their cause in their own message.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn network_reason(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} seconds", REQUEST_TIMEOUT.as_secs());
    }
    error_chain(&e.without_url())
}

/// How the client authenticates at a token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the OAuth default).
    Basic,
    /// In the form body (`client_secret_post`; GitHub's way).
    Post,
}

/// What a token endpoint returned. Secret: `Debug` redacts it.
struct Tokens {
    access_token: String,
    id_token: Option<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &REDACTED)
            .field("id_token", &self.id_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

struct CodeExchange<'a> {
    token_url: &'a Url,
    auth: ClientAuth,
    client_id: &'a str,
    client_secret: &'a str,
    code: &'a str,
    redirect_uri: &'a str,
    pkce_verifier: &'a str,
}

/// Redeem an authorization code (RFC 6749 §4.1.3 with RFC 7636's verifier).
async fn exchange_code(http: &UpstreamHttp, x: CodeExchange<'_>) -> Result<Tokens, IdpError> {
    // Built in a block: the serializer is not `Send` and must not live across
    // the await below.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", x.code)
            .append_pair("redirect_uri", x.redirect_uri)
            .append_pair("code_verifier", x.pkce_verifier);
        if x.auth == ClientAuth::Post {
            form.append_pair("client_id", x.client_id)
                .append_pair("client_secret", x.client_secret);
        }
        form.finish()
    };
    let mut request = http
        .client()?
        .post(x.token_url.clone())
        // GitHub answers form-encoded unless asked for JSON.
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body);
    if x.auth == ClientAuth::Basic {
        // RFC 6749 §2.3.1: form-encode both before Basic, so that a ':' in the
        // id cannot shift where the secret begins.
        let id: String = url::form_urlencoded::byte_serialize(x.client_id.as_bytes()).collect();
        let secret: String =
            url::form_urlencoded::byte_serialize(x.client_secret.as_bytes()).collect();
        request = request.basic_auth(id, Some(secret));
    }
    let answer = http.send(x.token_url, request).await?;
    let invalid = |reason: String| IdpError::InvalidResponse {
        url: shown(x.token_url),
        reason,
    };
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&answer.body).ok();
    if let Some(error) = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(|e| e.as_str())
    {
        let description = json
            .as_ref()
            .and_then(|j| j.get("error_description"))
            .and_then(|d| d.as_str())
            .and_then(|d| provider_text(d, x.code));
        return Err(IdpError::ProviderRefused {
            error: provider_text(error, x.code).unwrap_or_else(|| "unknown_error".into()),
            description,
        });
    }
    if !answer.status.is_success() {
        return Err(invalid(format!("HTTP {}", answer.status)));
    }
    let Some(json) = json else {
        return Err(invalid("the token response is not a JSON object".into()));
    };
    let Some(access_token) = json.get("access_token").and_then(|t| t.as_str()) else {
        return Err(invalid("the token response has no access_token".into()));
    };
    let id_token = json
        .get("id_token")
        .and_then(|t| t.as_str())
        .map(str::to_string);
    Ok(Tokens {
        access_token: access_token.to_string(),
        id_token,
    })
}

/// Text a provider chose (error codes, descriptions), made safe to show: no
/// control characters, bounded, and dropped if it echoes the code.
fn provider_text(text: &str, code: &str) -> Option<String> {
    if !code.is_empty() && text.contains(code) {
        return None;
    }
    let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let p = Pkce::generate();
        assert_eq!(p.verifier.len(), 43);
        assert_ne!(p.verifier, Pkce::generate().verifier);
    }

    #[test]
    fn endpoint_urls_need_https_except_loopback_in_tests() {
        assert!(endpoint_url("x", "https://idp.example", false).is_ok());
        assert!(endpoint_url("x", "http://idp.example", true).is_err());
        assert!(endpoint_url("x", "http://127.0.0.1:8080", false).is_err());
        assert!(endpoint_url("x", "http://127.0.0.1:8080", true).is_ok());
        assert!(endpoint_url("x", "http://[::1]:8080", true).is_ok());
        assert!(endpoint_url("x", "https://u:p@idp.example", false).is_err());
        assert!(endpoint_url("x", "ftp://idp.example", true).is_err());
    }

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

    #[test]
    fn provider_text_never_echoes_the_code() {
        assert_eq!(provider_text("code abc123 is bad", "abc123"), None);
        assert_eq!(
            provider_text("bad\ncode", "zzz").as_deref(),
            Some("badcode")
        );
    }
}
