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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use url::Url;

use super::Auth;
use super::account::form_session;
use super::flow::{found, signed_in};
use super::token::{LoginState, Token};
use super::user_tokens::{self, Source, UserToken, UserTokenError};
use crate::caller::UserId;
use crate::config::UserAuthConfig;
use crate::oauth::client::{
    self as oauth, AuthMethod, Credentials, EndpointError, Grant, HttpError, OAuthHttp, Pkce,
    PlainHttp, ResponseProblem, Secret, TokenError, TokenRequest, TokenResponse, provider_text,
};
use crate::store::Record;
use crate::store::sealed::Sealed;
use crate::util::now_unix;
use crate::web;

mod refresh;
mod tokens;

pub use refresh::fresh_token;
use tokens::*;

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
fn endpoint(what: &str, text: &str) -> Result<Url, EndpointError> {
    oauth::parse_endpoint(
        text,
        PlainHttp::Loopback,
        &format!("its {what}"),
        "configure an https URL (plain http only to loopback)",
    )
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
    let pkce = Pkce::generate();
    let state = Token::<LoginState>::generate();
    let key = state.hash().to_hex();
    let sealed = match sealer.seal(pkce.verifier.expose().as_bytes(), &key) {
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
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", Pkce::METHOD);
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
    let grant = Grant::AuthorizationCode {
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
        tokens.refresh_token.as_ref().map(Secret::expose),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_https_except_loopback() {
        assert!(endpoint("tokenUrl", "https://api.linear.app/oauth/token").is_ok());
        assert!(endpoint("tokenUrl", "http://127.0.0.1:9/token").is_ok());
        let err = endpoint("tokenUrl", "http://linear.app/token").expect_err("plain http");
        assert!(err.to_string().starts_with("its tokenUrl"), "{err}");
        assert!(endpoint("tokenUrl", "not a url").is_err());
    }

    #[test]
    fn a_bare_401_is_a_refused_client() {
        let e = UpstreamError::from(TokenError::Status {
            url: "https://p.example/token".into(),
            what: "refresh token grant",
            status: reqwest::StatusCode::UNAUTHORIZED,
        });
        assert_eq!(e.to_string(), "the provider answered invalid_client");
    }
}
