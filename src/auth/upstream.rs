//! "Connect with Linear": a service's own OAuth provider, for the person's token
//! there (`userAuthentication: {"type": "oauth", ...}`).
//!
//! - `POST /my/tokens/{service}/connect` (CSRF): start the code flow with PKCE
//!   (S256) and a `state` bound to the signed-in person; 302 to the provider.
//! - `GET /my/oauth/callback`: the provider sends the browser back; the pending
//!   flow is consumed (single use), must belong to the person signed in here, and
//!   the code is redeemed. Access and refresh tokens are sealed like any other
//!   user token (`user_tokens`), with the access token's expiry.
//! - `POST /my/tokens/{service}/disconnect` (CSRF): forget them.
//! - [`fresh_token`]: what `Auth::user_token` returns for such a record: the
//!   access token, refreshed first when it expires within [`REFRESH_SKEW`], so a
//!   backend never starts with a token about to die. A refresh that fails is an
//!   error telling the person to connect again, never the expired token.
//!
//! The state is a `Token<LoginState>` (only its hash is stored), and the PKCE
//! verifier is sealed, so the store holds nothing that finishes a flow. Tokens,
//! codes and verifiers never appear in logs, URLs or error messages; what the
//! provider says in its errors is shown only after removing anything that echoes
//! them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::Auth;
use super::account::form_session;
use super::flow::{found, signed_in};
use super::token::{LoginState, Token};
use super::user_tokens::{self, Source, UserToken, UserTokenError};
use crate::caller::UserId;
use crate::config::UserAuthConfig;
use crate::store::Record;
use crate::store::sealed::Sealed;
use crate::util::now_unix;
use crate::web;

/// How long a started Connect may take at the provider.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// Refresh when the access token has less than this left: a backend that gets
/// it now should not be handed something that dies during its first request.
pub const REFRESH_SKEW: i64 = 60;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A Connect between the redirect to the provider and its callback. Key: hash
/// of the `state` (a `Token<LoginState>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingConnect {
    /// Whose flow this is: only this person's callback may finish it.
    pub user: UserId,
    pub service: String,
    /// The PKCE verifier, sealed with the record key as associated data.
    pub verifier: Sealed,
    pub started_at: i64,
}

impl Record for PendingConnect {
    const KIND: &'static str = "upstream_connect";
}

/// The upstream OAuth settings of a service, if it has them.
struct Client<'a> {
    display_name: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    authorization_url: &'a str,
    token_url: &'a str,
    scopes: &'a [String],
}

fn client_of<'a>(auth: &'a Auth, service: &str) -> Option<Client<'a>> {
    let svc = auth.service(service)?;
    match &svc.user_auth {
        Some(UserAuthConfig::Oauth {
            client_id,
            client_secret,
            authorization_url,
            token_url,
            scopes,
            ..
        }) => Some(Client {
            display_name: svc.display_name(),
            client_id,
            client_secret,
            authorization_url,
            token_url,
            scopes,
        }),
        _ => None,
    }
}

/// A provider endpoint from config: https, or plain http to loopback only (a
/// fake provider in development), so a code or secret never crosses a network
/// in clear.
fn endpoint(what: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("its {what} is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "its {what} must be an https URL (plain http only to loopback)"
        )),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Back to `/my/tokens` with a message for the person.
fn back_with_error(auth: &Auth, message: &str) -> Response {
    found(&auth.url(&format!("/my/tokens?error={}", auth.flash(message))))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn connect(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match form_session(&auth, &headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(client) = client_of(&auth, &service) else {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Unknown service",
            "No service of this name connects through OAuth.",
        );
    };
    let Some(sealer) = auth.sealer() else {
        return back_with_error(&auth, &UserTokenError::NoKey.to_string());
    };
    let mut url = match endpoint("authorizationUrl", client.authorization_url) {
        Ok(u) => u,
        Err(why) => {
            tracing::error!(service = service.as_str(), "upstream OAuth: {why}");
            return back_with_error(
                &auth,
                &format!(
                    "{} cannot be connected: the gateway's configuration is wrong ({why}). Tell its administrator.",
                    client.display_name
                ),
            );
        }
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = Token::<LoginState>::generate();
    let key = state.hash().to_hex();
    let sealed = match sealer.seal(verifier.as_bytes(), &key) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("upstream OAuth: cannot seal a PKCE verifier: {e}");
            return back_with_error(&auth, "The connection could not be started; try again.");
        }
    };
    let pending = PendingConnect {
        user: session.user.clone(),
        service: service.clone(),
        verifier: sealed,
        started_at: now_unix(),
    };
    if let Err(e) = auth
        .store
        .put(&key, &pending, Some(SystemTime::now() + FLOW_TTL))
        .await
    {
        tracing::error!("upstream OAuth: cannot store a pending connection: {e}");
        return back_with_error(
            &auth,
            "The gateway's store is unavailable; try again shortly.",
        );
    }
    {
        // Appended, so that parameters the provider needs in the configured URL stay.
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client.client_id)
            .append_pair("redirect_uri", &auth.url("/my/oauth/callback"))
            .append_pair("state", state.reveal())
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if !client.scopes.is_empty() {
            q.append_pair("scope", &client.scopes.join(" "));
        }
    }
    tracing::info!(
        user = session.user.as_str(),
        service = service.as_str(),
        "upstream OAuth connect started"
    );
    found(url.as_str())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some((_, session)) = signed_in(&auth, &headers).await else {
        return web::error_page(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Your sign-in at this gateway has expired. Open /my/tokens, sign in, and connect again.",
        );
    };
    let invalid = || {
        web::error_page(
            StatusCode::BAD_REQUEST,
            "Connection link not valid",
            "This link is not from a connection started here, took longer than 10 minutes, or was already used. Open /my/tokens and connect again.",
        )
    };
    let Some(state) = q
        .state
        .as_deref()
        .and_then(|s| Token::<LoginState>::parse(s).ok())
    else {
        return invalid();
    };
    let key = state.hash().to_hex();
    // Consumed before anything else is checked: whatever happens next, this
    // state cannot be used a second time.
    let pending = match auth.store.take::<PendingConnect>(&key).await {
        Ok(Some(p)) => p,
        Ok(None) => return invalid(),
        Err(e) => {
            tracing::error!("upstream OAuth: cannot read a pending connection: {e}");
            return back_with_error(
                &auth,
                "The gateway's store is unavailable; try again shortly.",
            );
        }
    };
    if pending.user != session.user {
        tracing::warn!(
            user = session.user.as_str(),
            service = pending.service.as_str(),
            "upstream OAuth callback refused: the connection was started by someone else"
        );
        return web::error_page(
            StatusCode::FORBIDDEN,
            "Not your connection",
            "This connection was started by another person signed in at this gateway, so it was not finished. Open /my/tokens and connect again yourself.",
        );
    }
    let service = pending.service.as_str();
    let Some(client) = client_of(&auth, service) else {
        return back_with_error(&auth, "This service no longer connects through OAuth.");
    };
    let code = q.code.as_deref().unwrap_or("");
    if let Some(error) = q.error.as_deref() {
        let detail = [Some(error), q.error_description.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|t| provider_text(t, &[code]))
            .collect::<Vec<_>>()
            .join(": ");
        tracing::info!(
            user = session.user.as_str(),
            service,
            "upstream OAuth connect declined by the provider: {detail}"
        );
        return back_with_error(
            &auth,
            &format!(
                "{} did not connect ({detail}). Try again, or ask the administrator if it keeps failing.",
                client.display_name
            ),
        );
    }
    if code.is_empty() || code.len() > 4096 {
        return back_with_error(
            &auth,
            &format!(
                "{} sent no usable authorization code back. Try connecting again.",
                client.display_name
            ),
        );
    }
    let Some(sealer) = auth.sealer() else {
        return back_with_error(&auth, &UserTokenError::NoKey.to_string());
    };
    let verifier = match sealer.open(&pending.verifier, &key) {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(e) => {
            tracing::error!("upstream OAuth: cannot open a PKCE verifier: {e}");
            return back_with_error(
                &auth,
                "The connection could not be finished; connect again.",
            );
        }
    };
    let redirect_uri = auth.url("/my/oauth/callback");
    let grant = Grant::Code {
        code,
        redirect_uri: &redirect_uri,
        verifier: &verifier,
    };
    let tokens = match request_tokens(&client, grant).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                user = session.user.as_str(),
                service,
                "upstream OAuth code exchange failed: {e}"
            );
            return back_with_error(
                &auth,
                &format!(
                    "{} did not give a token: {e}. Try connecting again.",
                    client.display_name
                ),
            );
        }
    };
    match store(
        &auth,
        &session.user,
        service,
        &tokens,
        tokens.refresh_token.as_deref(),
    )
    .await
    {
        Ok(()) => connected(&auth, &session.user, service),
        Err(e) => store_failed(&auth, service, &e),
    }
}

fn connected(auth: &Auth, user: &UserId, service: &str) -> Response {
    tracing::info!(user = user.as_str(), service, "upstream OAuth connected");
    auth.user_token_changed(user, service);
    found(&auth.url(&format!("/my/tokens?saved={}", urlencode(service))))
}

fn store_failed(auth: &Auth, service: &str, e: &UserTokenError) -> Response {
    tracing::error!(service, "cannot store an upstream OAuth token: {e}");
    back_with_error(
        auth,
        "The token could not be stored; try connecting again shortly.",
    )
}

pub async fn disconnect(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match form_session(&auth, &headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(e) = auth.delete_user_token(&session.user, &service).await {
        tracing::error!(
            service = service.as_str(),
            "cannot remove a user token: {e}"
        );
        return back_with_error(
            &auth,
            "The connection could not be removed; try again shortly.",
        );
    }
    tracing::info!(
        user = session.user.as_str(),
        service = service.as_str(),
        "upstream OAuth disconnected"
    );
    auth.user_token_changed(&session.user, &service);
    found(&auth.url(&format!("/my/tokens?removed={}", urlencode(&service))))
}

/// Seal and keep what a token endpoint returned. `refresh`: the refresh token
/// to keep (the new one, or the old one when the provider did not rotate it).
async fn store(
    auth: &Auth,
    user: &UserId,
    service: &str,
    tokens: &TokenAnswer,
    refresh: Option<&str>,
) -> Result<(), UserTokenError> {
    let sealer = auth.sealer().ok_or(UserTokenError::NoKey)?;
    let k = user_tokens::key(user, service);
    let record = UserToken {
        source: Source::Oauth,
        token: sealer.seal(tokens.access_token.as_bytes(), &k)?,
        refresh: refresh.map(|r| sealer.seal(r.as_bytes(), &k)).transpose()?,
        expires_at: tokens.expires_in.map(|s| now_unix().saturating_add(s)),
        // Nothing of an OAuth token is shown: the person never saw it anyway.
        hint: String::new(),
        updated_at: now_unix(),
    };
    auth.store.put(&k, &record, None).await?;
    Ok(())
}

/// One lock per (person, service), so that sessions starting together refresh
/// once: with rotating refresh tokens, a second refresh with the same token
/// fails, and some providers then revoke the whole grant.
static REFRESHING: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn refresh_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut map = REFRESHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Forget locks nobody holds, so the map stays as small as the refreshes in flight.
    map.retain(|_, l| Arc::strong_count(l) > 1);
    map.entry(key.to_string()).or_default().clone()
}

/// The access token of an upstream OAuth record, refreshed first when it
/// expires within [`REFRESH_SKEW`] seconds.
pub async fn fresh_token(
    auth: &Auth,
    user: &UserId,
    service: &str,
    record: UserToken,
) -> Result<String, UserTokenError> {
    let sealer = auth.sealer().ok_or(UserTokenError::NoKey)?;
    let k = user_tokens::key(user, service);
    let open = |s: &Sealed| -> Result<String, UserTokenError> {
        Ok(String::from_utf8_lossy(&sealer.open(s, &k)?).into_owned())
    };
    let due = |r: &UserToken| r.expires_at.is_some_and(|e| e - now_unix() < REFRESH_SKEW);
    if !due(&record) {
        return open(&record.token);
    }
    let lock = refresh_lock(&k);
    let _guard = lock.lock().await;
    // Another session may have refreshed while this one waited.
    let Some(record) = auth.store.get::<UserToken>(&k).await? else {
        return Err(failed(
            auth,
            service,
            "the connection was removed meanwhile".into(),
        ));
    };
    if record.source != Source::Oauth || !due(&record) {
        return open(&record.token);
    }
    let Some(client) = client_of(auth, service) else {
        return Err(failed(
            auth,
            service,
            "the service no longer connects through OAuth".into(),
        ));
    };
    let Some(refresh) = record.refresh.as_ref().map(&open).transpose()? else {
        return Err(failed(
            auth,
            service,
            format!(
                "the access token expires and {} gave no refresh token",
                client.display_name
            ),
        ));
    };
    match request_tokens(&client, Grant::Refresh { token: &refresh }).await {
        Ok(tokens) => {
            let keep = tokens.refresh_token.as_deref().unwrap_or(&refresh);
            store(auth, user, service, &tokens, Some(keep)).await?;
            tracing::info!(
                user = user.as_str(),
                service,
                "upstream OAuth token refreshed"
            );
            Ok(tokens.access_token.clone())
        }
        Err(e) => {
            tracing::warn!(
                user = user.as_str(),
                service,
                "upstream OAuth refresh failed: {e}"
            );
            if e.is_invalid_grant() {
                // The grant is dead at the provider: drop it, so /my/tokens offers
                // Connect again instead of showing a connection that cannot work.
                let _ = auth.store.delete::<UserToken>(&k).await;
            }
            Err(failed(auth, service, e.to_string()))
        }
    }
}

fn failed(auth: &Auth, service: &str, reason: String) -> UserTokenError {
    let display = auth
        .service(service)
        .map_or(service, |s| s.display_name())
        .to_string();
    UserTokenError::UpstreamRefreshFailed {
        service: display,
        reason,
        reconnect: auth.url("/my/tokens"),
    }
}

// ---- the token endpoint ---------------------------------------------------------

enum Grant<'a> {
    Code {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    Refresh {
        token: &'a str,
    },
}

impl Grant<'_> {
    /// Secrets of this request, which provider text must not echo.
    fn secrets(&self) -> Vec<&str> {
        match self {
            Grant::Code { code, verifier, .. } => vec![code, verifier],
            Grant::Refresh { token } => vec![token],
        }
    }
}

/// What a token endpoint returned. Secret: `Debug` redacts it.
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum UpstreamError {
    Config(String),
    Network(String),
    Refused {
        error: String,
        description: Option<String>,
    },
    Invalid(String),
}

impl UpstreamError {
    fn is_invalid_grant(&self) -> bool {
        matches!(self, UpstreamError::Refused { error, .. } if error == "invalid_grant")
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Config(why) => {
                write!(f, "the gateway's configuration is wrong: {why}")
            }
            UpstreamError::Network(why) => {
                write!(f, "the provider could not be reached ({why})")
            }
            UpstreamError::Refused {
                error,
                description: Some(d),
            } => write!(f, "the provider answered {error}: {d}"),
            UpstreamError::Refused { error, .. } => write!(f, "the provider answered {error}"),
            UpstreamError::Invalid(why) => {
                write!(f, "the provider's answer was not usable ({why})")
            }
        }
    }
}

/// Text a provider chose (error codes, descriptions), made safe to show: no
/// control characters, bounded, and dropped if it echoes a secret.
fn provider_text(text: &str, secrets: &[&str]) -> Option<String> {
    if secrets.iter().any(|s| !s.is_empty() && text.contains(s)) {
        return None;
    }
    let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

fn http() -> Result<&'static reqwest::Client, UpstreamError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // No redirects: a redirect from a token endpoint would carry the
            // client secret and the code or refresh token to wherever it points.
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("the HTTPS client could not be set up: {e}"))
        })
        .as_ref()
        .map_err(|e| UpstreamError::Config(e.clone()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
}

/// Redeem a code or a refresh token at the service's token endpoint.
///
/// Client authentication: HTTP Basic first (RFC 6749 requires servers to take
/// it; Notion takes nothing else), then once more with the secret in the body
/// if the provider says `invalid_client` (some, like Linear's docs, show only
/// that). A refused client authentication does not use up the code.
async fn request_tokens(
    client: &Client<'_>,
    grant: Grant<'_>,
) -> Result<TokenAnswer, UpstreamError> {
    let url = endpoint("tokenUrl", client.token_url).map_err(UpstreamError::Config)?;
    match post_token(client, &url, &grant, ClientAuth::Basic).await {
        Err(UpstreamError::Refused { error, .. }) if error == "invalid_client" => {
            post_token(client, &url, &grant, ClientAuth::Post).await
        }
        other => other,
    }
}

async fn post_token(
    client: &Client<'_>,
    url: &Url,
    grant: &Grant<'_>,
    how: ClientAuth,
) -> Result<TokenAnswer, UpstreamError> {
    // Built in a block: the serializer is not `Send` and must not live across
    // the await below.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match grant {
            Grant::Code {
                code,
                redirect_uri,
                verifier,
            } => {
                form.append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("code_verifier", verifier);
            }
            Grant::Refresh { token } => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token);
            }
        }
        if how == ClientAuth::Post {
            form.append_pair("client_id", client.client_id)
                .append_pair("client_secret", client.client_secret);
        }
        form.finish()
    };
    let mut request = http()?
        .post(url.clone())
        // GitHub-style providers answer form-encoded unless asked for JSON.
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    if how == ClientAuth::Basic {
        // RFC 6749 §2.3.1: form-encode both first, so a ':' in the id cannot
        // shift where the secret begins.
        request = request.basic_auth(
            urlencode(client.client_id),
            Some(urlencode(client.client_secret)),
        );
    }
    let network = |e: reqwest::Error| {
        UpstreamError::Network(if e.is_timeout() {
            format!("no answer within {} seconds", REQUEST_TIMEOUT.as_secs())
        } else {
            error_chain(&e.without_url())
        })
    };
    let mut response = request.send().await.map_err(network)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(UpstreamError::Invalid(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let secrets = grant.secrets();
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&body).ok();
    let text = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
    };
    // Some providers (GitHub) report errors with status 200.
    if let Some(error) = text("error") {
        return Err(UpstreamError::Refused {
            error: provider_text(error, &secrets).unwrap_or_else(|| "unknown_error".into()),
            description: text("error_description").and_then(|d| provider_text(d, &secrets)),
        });
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        // A 401 without an OAuth error body is still a refused client.
        return Err(UpstreamError::Refused {
            error: "invalid_client".into(),
            description: None,
        });
    }
    if !status.is_success() {
        return Err(UpstreamError::Invalid(format!("HTTP {status}")));
    }
    let Some(access_token) = text("access_token").filter(|t| !t.is_empty()) else {
        return Err(UpstreamError::Invalid(
            "no access_token in a JSON answer".into(),
        ));
    };
    // A number by RFC 6749, but a few providers send a string.
    let expires_in = json
        .as_ref()
        .and_then(|j| j.get("expires_in"))
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
    Ok(TokenAnswer {
        access_token: access_token.to_string(),
        refresh_token: text("refresh_token")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        expires_in: expires_in.filter(|s| *s > 0),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_never_echoes_a_secret() {
        assert_eq!(provider_text("bad code abc123", &["abc123"]), None);
        assert_eq!(
            provider_text("expired\r\n", &["abc123"]).as_deref(),
            Some("expired")
        );
        assert_eq!(provider_text("x", &[""]).as_deref(), Some("x"));
    }

    #[test]
    fn endpoints_need_https_except_loopback() {
        assert!(endpoint("tokenUrl", "https://api.linear.app/oauth/token").is_ok());
        assert!(endpoint("tokenUrl", "http://127.0.0.1:9/token").is_ok());
        assert!(endpoint("tokenUrl", "http://linear.app/token").is_err());
        assert!(endpoint("tokenUrl", "not a url").is_err());
    }

    #[test]
    fn token_answers_do_not_debug_print_tokens() {
        let t = TokenAnswer {
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            expires_in: Some(10),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
