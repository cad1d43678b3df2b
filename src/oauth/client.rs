//! The outbound OAuth client: what mcpgate does when *it* is the client of
//! someone else's authorization server. Three places need it, each with its own
//! flow around the same few requests:
//!
//! - `auth::idp` signs people in with Google, any OpenID Connect provider or
//!   GitHub (authorization code with PKCE);
//! - `auth::upstream` connects a person's account at a backend's own OAuth
//!   provider, and refreshes that token later;
//! - `connect` is the `mcpgate connect` bridge, a public or confidential client
//!   of remote MCP servers (code with PKCE, refresh, device code).
//!
//! This module holds what they share: PKCE, the rule on where plain http may
//! carry secrets, the token endpoint request with client authentication, the
//! typed token response, and the redaction of secrets from everything that can
//! end up in a log or an error page.
//!
//! Secrets (client secrets, codes, PKCE verifiers, device codes, tokens) are
//! kept in [`Secret`], whose `Debug` prints nothing of them, and no error of
//! this module ever holds one: text a server sends back is only shown through
//! [`provider_text`], which drops it when it echoes a secret of the request.
//!
//! It is a low layer: it imports only `crate::util` and external crates.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::util::is_loopback_url;

const REDACTED: &str = "<redacted>";

/// The grant type of RFC 8628 (device authorization).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

// ---- secrets ----------------------------------------------------------------

/// A value that must never be printed: `Debug` shows `<redacted>`, and there is
/// deliberately no `Display`, so `format!("{secret}")` does not compile.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// 256 random bits, base64url (43 characters): PKCE verifiers (within RFC
/// 7636's 43..=128), nonces, `state` values.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---- PKCE (RFC 7636) -------------------------------------------------------

/// A PKCE pair: the verifier stays with us until the code is redeemed, the
/// challenge goes into the authorization URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    /// The only method used: `plain` would put the verifier itself in the URL.
    pub const METHOD: &'static str = "S256";

    pub fn generate() -> Pkce {
        let verifier = random_secret();
        let challenge = Pkce::challenge_of(&verifier);
        Pkce {
            verifier: Secret(verifier),
            challenge,
        }
    }

    /// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
    pub fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

// ---- where plain http may go -------------------------------------------------

/// Where plain http is accepted for a URL that carries secrets or decides whom
/// to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// https only.
    Never,
    /// http to this machine too: nothing sent to loopback leaves the machine
    /// (fakes in tests, local development servers).
    Loopback,
    /// http anywhere: the user said the network is trusted (`--allow-http`).
    Anywhere,
}

impl PlainHttp {
    /// [`PlainHttp::Loopback`] when `allowed`, else [`PlainHttp::Never`].
    pub fn loopback_if(allowed: bool) -> PlainHttp {
        if allowed {
            PlainHttp::Loopback
        } else {
            PlainHttp::Never
        }
    }
}

/// Why an endpoint URL is not used. Names the URL as [`shown`], never its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{what} {text:?} is not a URL: {reason}")]
    NotUrl {
        what: String,
        text: String,
        reason: String,
    },
    /// `hint` says what to do instead; it differs by caller (a command line flag,
    /// a configuration rule).
    #[error(
        "{what} {url} is plain http{}, so secrets would travel unencrypted; {hint}",
        if *.loopback_allowed { " on another machine" } else { "" }
    )]
    PlainHttp {
        what: String,
        url: String,
        loopback_allowed: bool,
        hint: String,
    },
    #[error(
        "{what} {url} has the scheme {scheme:?}; only https{} supported",
        if *.loopback_allowed { " (and http on loopback) are" } else { " is" }
    )]
    Scheme {
        what: String,
        url: String,
        scheme: String,
        loopback_allowed: bool,
    },
    #[error("{what} {url} has no host")]
    NoHost { what: String, url: String },
    #[error("{what} must not carry credentials in the URL")]
    Credentials { what: String },
}

/// The one rule for URLs that carry secrets (codes, tokens, client secrets) or
/// decide whose keys are trusted: https, or plain http as `plain_http` allows.
/// `what` names the URL in the error ("the token endpoint"), `hint` says what
/// to do about a refused plain http URL.
pub fn check_endpoint(
    url: &Url,
    plain_http: PlainHttp,
    what: &str,
    hint: &str,
) -> Result<(), EndpointError> {
    let loopback_allowed = plain_http != PlainHttp::Never;
    match url.scheme() {
        "https" => Ok(()),
        "http" if plain_http == PlainHttp::Anywhere => Ok(()),
        "http" if loopback_allowed && is_loopback_url(url) => Ok(()),
        "http" => Err(EndpointError::PlainHttp {
            what: what.to_string(),
            url: shown(url),
            loopback_allowed,
            hint: hint.to_string(),
        }),
        other => Err(EndpointError::Scheme {
            what: what.to_string(),
            url: shown(url),
            scheme: other.to_string(),
            loopback_allowed,
        }),
    }
}

/// Parse an endpoint URL from configuration or metadata and apply
/// [`check_endpoint`]; it must also name a host and carry no credentials (a
/// secret in a URL ends up in logs).
pub fn parse_endpoint(
    text: &str,
    plain_http: PlainHttp,
    what: &str,
    hint: &str,
) -> Result<Url, EndpointError> {
    let url = Url::parse(text.trim()).map_err(|e| EndpointError::NotUrl {
        what: what.to_string(),
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    check_endpoint(&url, plain_http, what, hint)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost {
            what: what.to_string(),
            url: shown(&url),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials {
            what: what.to_string(),
        });
    }
    Ok(url)
}

/// A URL as shown in errors: without credentials, query or fragment, which is
/// where a misconfigured URL might carry something secret.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

// ---- redaction ----------------------------------------------------------------

/// Text a server chose (error codes, descriptions), made safe to show: no
/// control characters, at most 200 characters, and dropped entirely if it
/// echoes one of `secrets` (some servers quote the code or token they refuse).
pub fn provider_text(text: &str, secrets: &[&str]) -> Option<String> {
    if secrets.iter().any(|s| !s.is_empty() && text.contains(s)) {
        return None;
    }
    let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

/// `error: error_description` of an OAuth error body (RFC 6749 §5.2), through
/// [`provider_text`]; nothing else of the body is shown, since it could quote
/// what we sent.
pub fn provider_error_text(body: &[u8], secrets: &[&str]) -> String {
    let json: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
    };
    match field("error") {
        Some(error) => {
            let error = provider_text(error, secrets).unwrap_or_else(|| "unknown_error".into());
            match field("error_description").and_then(|d| provider_text(d, secrets)) {
                Some(d) => format!("{error}: {d}"),
                None => error,
            }
        }
        None => "no OAuth error in the answer".to_string(),
    }
}

/// An error with its sources, on one line. hyper and reqwest often repeat
/// their cause in their own message, so a source already contained is skipped.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

// ---- HTTP -------------------------------------------------------------------------

/// How a request is sent, for callers that record their requests (connect's
/// `--trace-file`). A plain function, so that [`OAuthHttp`] stays `Clone`.
pub type SendFn = fn(
    reqwest::RequestBuilder,
) -> Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>>;

/// The HTTP client for talking to authorization servers, with its limits.
#[derive(Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
    /// The client's total timeout, to say it in errors.
    timeout: Duration,
    /// The largest answer read; a broken or hostile endpoint must not make us
    /// buffer without end.
    max_body: usize,
    send: Option<SendFn>,
}

impl fmt::Debug for OAuthHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthHttp")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl OAuthHttp {
    /// A client that never follows redirects: a redirect from a token endpoint
    /// could carry the client secret and the code to another host, and an
    /// authorization server's endpoints are known, not found by hops.
    pub fn build(
        user_agent: &'static str,
        connect_timeout: Duration,
        timeout: Duration,
        max_body: usize,
    ) -> Result<OAuthHttp, TokenError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| TokenError::Setup(error_chain(&e)))?;
        Ok(OAuthHttp::with_client(client, timeout, max_body))
    }

    /// Use a client the caller built (it must not follow redirects, see
    /// [`OAuthHttp::build`]); `timeout` is its timeout, for error messages.
    pub fn with_client(client: reqwest::Client, timeout: Duration, max_body: usize) -> OAuthHttp {
        OAuthHttp {
            client,
            timeout,
            max_body,
            send: None,
        }
    }

    /// Send requests through `send` instead of `RequestBuilder::send`.
    pub fn sending_with(mut self, send: SendFn) -> OAuthHttp {
        self.send = Some(send);
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send and read the whole answer (up to the size limit). `url` is the
    /// request's, for errors.
    pub async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, HttpError> {
        let network = |e: reqwest::Error| HttpError::Network {
            url: shown(url),
            reason: self.network_reason(e),
        };
        let sent = match self.send {
            Some(send) => send(request).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(network)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(HttpError::TooLarge {
                    url: shown(url),
                    limit: self.max_body,
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

    fn network_reason(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {} seconds", self.timeout.as_secs());
        }
        // Without the URL: the caller names it, and a URL may carry a query.
        error_chain(&e.without_url())
    }
}

/// An HTTP answer as read: status, content type, body (capped).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_json(&self) -> bool {
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

/// The request did not get a whole answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("could not reach {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("the answer of {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

// ---- the token endpoint (RFC 6749 §3.2, §4.1.3, §6; RFC 8628) ----------------------

/// How the client authenticates at the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: `client_id` in the form, no secret.
    None,
    /// HTTP Basic (`client_secret_basic`, the OAuth default).
    Basic,
    /// In the form body (`client_secret_post`; GitHub's way).
    Post,
    /// Basic first (RFC 6749 requires servers to take it; some take nothing
    /// else), then once more in the body if the server refuses the client
    /// (`invalid_client`, or a bare 401): some providers document only that.
    /// A refused client authentication does not use up the code.
    BasicThenPost,
}

impl AuthMethod {
    /// The method of a name as in `token_endpoint_auth_method`; unknown names
    /// (and `none`) are a public client.
    pub fn from_name(name: &str) -> AuthMethod {
        match name {
            "client_secret_basic" => AuthMethod::Basic,
            "client_secret_post" => AuthMethod::Post,
            _ => AuthMethod::None,
        }
    }
}

/// Who the client is at the token endpoint. `Debug` redacts the secret.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    /// Without a secret, any method is [`AuthMethod::None`].
    pub client_secret: Option<&'a str>,
    pub method: AuthMethod,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.map(|_| REDACTED))
            .field("method", &self.method)
            .finish()
    }
}

/// What is redeemed at the token endpoint.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    /// RFC 6749 §4.1.3 with RFC 7636's verifier.
    AuthorizationCode {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    /// RFC 6749 §6.
    RefreshToken { refresh_token: &'a str },
    /// RFC 8628 §3.4.
    DeviceCode { device_code: &'a str },
}

impl Grant<'_> {
    /// For messages: "authorization code grant", "refresh token grant", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode { .. } => "authorization code grant",
            Grant::RefreshToken { .. } => "refresh token grant",
            Grant::DeviceCode { .. } => "device code grant",
        }
    }

    fn secrets(&self) -> Vec<&str> {
        match self {
            Grant::AuthorizationCode { code, verifier, .. } => vec![code, verifier],
            Grant::RefreshToken { refresh_token } => vec![refresh_token],
            Grant::DeviceCode { device_code } => vec![device_code],
        }
    }

    fn append_to(&self, form: &mut url::form_urlencoded::Serializer<'_, String>) {
        match self {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                verifier,
            } => {
                form.append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("code_verifier", verifier);
            }
            Grant::RefreshToken { refresh_token } => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh_token);
            }
            Grant::DeviceCode { device_code } => {
                form.append_pair("grant_type", DEVICE_CODE_GRANT)
                    .append_pair("device_code", device_code);
            }
        }
    }
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::AuthorizationCode { redirect_uri, .. } => f
                .debug_struct("AuthorizationCode")
                .field("redirect_uri", redirect_uri)
                .finish_non_exhaustive(),
            Grant::RefreshToken { .. } => f.debug_struct("RefreshToken").finish_non_exhaustive(),
            Grant::DeviceCode { .. } => f.debug_struct("DeviceCode").finish_non_exhaustive(),
        }
    }
}

/// One request to a token endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// Checked by the caller with [`check_endpoint`] or [`parse_endpoint`].
    pub endpoint: &'a Url,
    pub client: Credentials<'a>,
    pub grant: Grant<'a>,
    /// RFC 8707: the resource the token is for (MCP asks for it).
    pub resource: Option<&'a str>,
}

/// A successful token response (RFC 6749 §5.1). `Debug` shows no token.
#[derive(Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: Option<String>,
    /// Seconds, as the server said (RFC 6749 says a number; some send a string).
    pub expires_in: Option<u64>,
    /// `None` also when the server sent an empty one, which cannot be used.
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    /// OpenID Connect.
    pub id_token: Option<Secret>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .finish()
    }
}

/// A device authorization response (RFC 8628 §3.2). `Debug` hides the device
/// code; the user code is meant to be shown.
#[derive(Clone)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: Option<String>,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Option<u64>,
    pub interval: Option<u64>,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &self.device_code)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// What was unusable in a successful-looking answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseProblem {
    #[error("the answer is not a JSON object")]
    NotJson,
    #[error("the answer has no access_token")]
    NoAccessToken,
    #[error("the answer has no device_code and user_code")]
    NoDeviceCode,
}

/// Why a token (or device authorization) request failed. Never holds a secret:
/// what the server said passed through [`provider_text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("could not set up the HTTPS client: {0}")]
    Setup(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with an OAuth error (RFC 6749 §5.2), whatever the
    /// status: GitHub sends its errors with 200.
    #[error(
        "{url} refused the {what} ({status}): {error}{}",
        describe(description)
    )]
    Refused {
        url: String,
        what: &'static str,
        status: StatusCode,
        /// The OAuth error code, e.g. `invalid_grant`.
        error: String,
        description: Option<String>,
    },
    /// A failure status without an OAuth error in the body.
    #[error("{url} refused the {what} ({status}): no OAuth error in the answer")]
    Status {
        url: String,
        what: &'static str,
        status: StatusCode,
    },
    #[error("{url} answered the {what} with something unusable: {problem}")]
    Invalid {
        url: String,
        what: &'static str,
        problem: ResponseProblem,
    },
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl TokenError {
    /// The OAuth error code, when the server sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            TokenError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The server does not accept this client (or how it authenticated). A bare
    /// 401 counts: some servers send no body with it.
    pub fn is_invalid_client(&self) -> bool {
        match self {
            TokenError::Refused { error, .. } => error == "invalid_client",
            TokenError::Status { status, .. } => *status == StatusCode::UNAUTHORIZED,
            _ => false,
        }
    }
}

/// Redeem a grant at a token endpoint, authenticating the client as
/// `request.client.method` says (with its fallback for
/// [`AuthMethod::BasicThenPost`]).
pub async fn request_token(
    http: &OAuthHttp,
    request: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let what = request.grant.describe();
    let mut secrets = request.grant.secrets();
    secrets.extend(request.client.client_secret);
    let post = |method: AuthMethod| {
        let grant = request.grant;
        let resource = request.resource;
        let secrets = &secrets;
        async move {
            let answer = post_form(http, request.endpoint, &request.client, method, |form| {
                grant.append_to(form);
                if let Some(r) = resource {
                    form.append_pair("resource", r);
                }
            })
            .await?;
            token_response(request.endpoint, what, &answer, secrets)
        }
    };
    match request.client.method {
        AuthMethod::BasicThenPost => match post(AuthMethod::Basic).await {
            Err(e) if e.is_invalid_client() => post(AuthMethod::Post).await,
            other => other,
        },
        method => post(method).await,
    }
}

/// Start a device authorization (RFC 8628 §3.1). The endpoint authenticates
/// clients like the token endpoint does.
pub async fn request_device_authorization(
    http: &OAuthHttp,
    endpoint: &Url,
    client: &Credentials<'_>,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Result<DeviceAuthorization, TokenError> {
    const WHAT: &str = "device authorization request";
    let secrets: Vec<&str> = client.client_secret.into_iter().collect();
    let method = match client.method {
        AuthMethod::BasicThenPost => AuthMethod::Basic,
        m => m,
    };
    let answer = post_form(http, endpoint, client, method, |form| {
        if let Some(r) = resource {
            form.append_pair("resource", r);
        }
        if let Some(s) = scope {
            form.append_pair("scope", s);
        }
    })
    .await?;
    let json = oauth_answer(endpoint, WHAT, &answer, &secrets)?;
    let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(device_code), Some(user_code)) = (text("device_code"), text("user_code")) else {
        return Err(TokenError::Invalid {
            url: shown(endpoint),
            what: WHAT,
            problem: ResponseProblem::NoDeviceCode,
        });
    };
    Ok(DeviceAuthorization {
        device_code: Secret(device_code),
        user_code,
        verification_uri: text("verification_uri"),
        verification_uri_complete: text("verification_uri_complete"),
        expires_in: seconds(json.get("expires_in")),
        interval: seconds(json.get("interval")),
    })
}

/// POST a form with client authentication; `fill` adds the request's own fields.
async fn post_form(
    http: &OAuthHttp,
    endpoint: &Url,
    client: &Credentials<'_>,
    method: AuthMethod,
    fill: impl FnOnce(&mut url::form_urlencoded::Serializer<'_, String>),
) -> Result<Answer, TokenError> {
    let method = if client.client_secret.is_some() {
        method
    } else {
        AuthMethod::None
    };
    // Built in a block: the serializer is not `Send` and must not live across
    // the await below.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        fill(&mut form);
        match (method, client.client_secret) {
            (AuthMethod::Post, Some(secret)) => {
                form.append_pair("client_id", client.client_id)
                    .append_pair("client_secret", secret);
            }
            (AuthMethod::Basic | AuthMethod::BasicThenPost, Some(_)) => {}
            _ => {
                form.append_pair("client_id", client.client_id);
            }
        }
        form.finish()
    };
    let mut request = http
        .client()
        .post(endpoint.clone())
        // GitHub answers form-encoded unless asked for JSON.
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body);
    if let (AuthMethod::Basic | AuthMethod::BasicThenPost, Some(secret)) =
        (method, client.client_secret)
    {
        // RFC 6749 §2.3.1: form-encode both before Basic, so that a ':' in the
        // id cannot shift where the secret begins.
        request = request.basic_auth(form_encode(client.client_id), Some(form_encode(secret)));
    }
    Ok(http.send(endpoint, request).await?)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The JSON object of a successful OAuth answer, or the error it carries.
fn oauth_answer(
    endpoint: &Url,
    what: &'static str,
    answer: &Answer,
    secrets: &[&str],
) -> Result<Map<String, Value>, TokenError> {
    let json: Option<Map<String, Value>> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
    };
    if let Some(error) = field("error") {
        return Err(TokenError::Refused {
            url: shown(endpoint),
            what,
            status: answer.status,
            error: provider_text(error, secrets).unwrap_or_else(|| "unknown_error".into()),
            description: field("error_description").and_then(|d| provider_text(d, secrets)),
        });
    }
    if !answer.status.is_success() {
        return Err(TokenError::Status {
            url: shown(endpoint),
            what,
            status: answer.status,
        });
    }
    json.ok_or_else(|| TokenError::Invalid {
        url: shown(endpoint),
        what,
        problem: ResponseProblem::NotJson,
    })
}

fn token_response(
    endpoint: &Url,
    what: &'static str,
    answer: &Answer,
    secrets: &[&str],
) -> Result<TokenResponse, TokenError> {
    let json = oauth_answer(endpoint, what, answer, secrets)?;
    let text = |name: &str| {
        json.get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let Some(access_token) = text("access_token") else {
        return Err(TokenError::Invalid {
            url: shown(endpoint),
            what,
            problem: ResponseProblem::NoAccessToken,
        });
    };
    Ok(TokenResponse {
        access_token: Secret(access_token),
        token_type: text("token_type"),
        expires_in: seconds(json.get("expires_in")),
        refresh_token: text("refresh_token").map(Secret),
        scope: text("scope"),
        id_token: text("id_token").map(Secret),
    })
}

/// A number of seconds: a JSON number by the RFCs, but a few servers send a string.
fn seconds(value: Option<&Value>) -> Option<u64> {
    let v = value?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 6] = [
        "client-secret-1",
        "code-secret-2",
        "verifier-secret-3",
        "access-secret-4",
        "refresh-secret-5",
        "id-secret-6",
    ];

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    fn assert_no_secret(text: &str) {
        for s in SECRETS {
            assert!(!text.contains(s), "{s} in {text}");
        }
    }

    #[test]
    fn pkce_challenge_is_base64url_sha256_of_verifier() {
        // RFC 7636 appendix B.
        assert_eq!(
            Pkce::challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, Pkce::challenge_of(p.verifier.expose()));
        assert_ne!(p.verifier, Pkce::generate().verifier);
        assert!(!format!("{p:?}").contains(p.verifier.expose()));
    }

    #[test]
    fn https_anywhere_plain_http_only_on_loopback() {
        let check = |u: &str, p| check_endpoint(&url(u), p, "the token endpoint", "use https");
        assert!(check("https://as.example/token", PlainHttp::Never).is_ok());
        assert!(check("https://as.example/token", PlainHttp::Loopback).is_ok());
        for u in [
            "http://127.0.0.1:8080/token",
            "http://[::1]/token",
            "http://localhost/token",
        ] {
            assert!(check(u, PlainHttp::Loopback).is_ok(), "{u}");
            assert!(check(u, PlainHttp::Never).is_err(), "{u}");
        }
        let err = check("http://as.example/token?x=1", PlainHttp::Loopback)
            .expect_err("plain http to another machine");
        let text = err.to_string();
        assert!(text.contains("http://as.example/token"), "{text}");
        assert!(!text.contains("x=1"), "{text}");
        assert!(text.contains("use https"), "{text}");
        assert!(check("http://as.example/token", PlainHttp::Anywhere).is_ok());
        assert!(check("ftp://as.example/token", PlainHttp::Anywhere).is_err());
    }

    #[test]
    fn parsed_endpoints_need_a_host_and_no_credentials() {
        let parse = |t: &str| parse_endpoint(t, PlainHttp::Loopback, "x", "hint");
        assert!(parse("https://as.example").is_ok());
        assert!(parse("not a url").is_err());
        let err = parse("https://u:client-secret-1@as.example").expect_err("credentials");
        assert_no_secret(&err.to_string());
    }

    #[test]
    fn token_responses_never_print_tokens() {
        let answer = Answer {
            status: StatusCode::OK,
            content_type: "application/json".into(),
            body: serde_json::json!({
                "access_token": "access-secret-4",
                "token_type": "Bearer",
                "expires_in": "3600",
                "refresh_token": "refresh-secret-5",
                "id_token": "id-secret-6",
                "scope": "a b",
            })
            .to_string()
            .into_bytes(),
        };
        let t = token_response(&url("https://as.example/token"), "x", &answer, &[])
            .expect("a token response");
        assert_eq!(t.access_token.expose(), "access-secret-4");
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.scope.as_deref(), Some("a b"));
        assert_no_secret(&format!("{t:?}"));
        let device = DeviceAuthorization {
            device_code: Secret::new("code-secret-2"),
            user_code: "WDJB".into(),
            verification_uri: None,
            verification_uri_complete: None,
            expires_in: None,
            interval: None,
        };
        assert_no_secret(&format!("{device:?}"));
    }

    #[test]
    fn requests_and_errors_never_print_secrets() {
        let endpoint = url("https://as.example/token");
        let request = TokenRequest {
            endpoint: &endpoint,
            client: Credentials {
                client_id: "id",
                client_secret: Some("client-secret-1"),
                method: AuthMethod::BasicThenPost,
            },
            grant: Grant::AuthorizationCode {
                code: "code-secret-2",
                redirect_uri: "http://127.0.0.1/cb",
                verifier: "verifier-secret-3",
            },
            resource: None,
        };
        assert_no_secret(&format!("{request:?}"));

        // A server that quotes what it was sent.
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            content_type: "application/json".into(),
            body: serde_json::json!({
                "error": "invalid_grant",
                "error_description": "code code-secret-2 with verifier-secret-3 for client-secret-1",
            })
            .to_string()
            .into_bytes(),
        };
        let mut secrets = request.grant.secrets();
        secrets.push("client-secret-1");
        let err = token_response(&endpoint, "x", &answer, &secrets).expect_err("refused");
        assert_eq!(err.oauth_error(), Some("invalid_grant"));
        assert_no_secret(&err.to_string());
        assert_no_secret(&format!("{err:?}"));
        assert_no_secret(&provider_error_text(&answer.body, &secrets));
    }

    #[test]
    fn provider_text_is_clean_and_bounded() {
        assert_eq!(provider_text("bad code abc123", &["abc123"]), None);
        assert_eq!(
            provider_text("expired\r\n", &["abc123"]).as_deref(),
            Some("expired")
        );
        assert_eq!(provider_text("x", &[""]).as_deref(), Some("x"));
        assert_eq!(
            provider_text(&"y".repeat(500), &[]).map(|t| t.len()),
            Some(200)
        );
    }

    #[test]
    fn bare_401_counts_as_invalid_client_and_200_errors_are_errors() {
        let endpoint = url("https://as.example/token");
        let bare = Answer {
            status: StatusCode::UNAUTHORIZED,
            content_type: String::new(),
            body: Vec::new(),
        };
        let err = token_response(&endpoint, "x", &bare, &[]).expect_err("401");
        assert!(err.is_invalid_client());
        assert_eq!(err.oauth_error(), None);
        let github = Answer {
            status: StatusCode::OK,
            content_type: "application/json".into(),
            body: br#"{"error":"bad_verification_code"}"#.to_vec(),
        };
        let err = token_response(&endpoint, "x", &github, &[]).expect_err("error with 200");
        assert_eq!(err.oauth_error(), Some("bad_verification_code"));
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
