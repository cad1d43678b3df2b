//! `/token` (authorization code and refresh token grants) and `/revoke` (RFC 7009).
//!
//! - Codes are taken from the store atomically (one redemption wins). A redeemed
//!   code is remembered for a while: redeeming it again revokes every token the
//!   first redemption issued (RFC 6749 §4.1.2).
//! - Refresh tokens rotate on every use. The rotated token keeps working for a
//!   short grace window (parallel sessions of one client refreshing from the
//!   same stored token at once); reuse after that revokes the whole family.
//! - Errors keep their real code: `invalid_grant` only when the grant is truly
//!   invalid, `server_error` when the store fails (clients treat `invalid_grant`
//!   as "sign in again").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::clients::{Client, too_many};
use super::flow::is_pkce_value;
use super::jwt::AccessClaims;
use super::records::RefreshGrant;
use super::token::{AuthorizationCode, Refresh, Token};
use super::{Audience, Auth, FamilyId};
use crate::caller::{ClientId, UserId};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::util::{now_unix, random_id, secure_eq};

/// How long a redeemed code is remembered for replay detection.
mod code;
mod issue;
mod refresh;

use code::code_grant;
use refresh::refresh_grant;

const REDEEMED_MEMORY: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token: Option<String>,
}

fn err(code: ErrorCode, description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(code, description)
}

fn store_failed(e: crate::store::StoreError) -> OAuthError {
    tracing::error!("token endpoint store failure: {e}");
    err(
        ErrorCode::ServerError,
        "the gateway's store is unavailable; try again shortly",
    )
}

pub async fn token(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match Requester::admit(&auth, peer, &headers, &body) {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    let result = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate_client(&auth, &headers, &form).await?;
        match form.grant_type.as_deref() {
            Some("authorization_code") => code_grant(&auth, &client, &form).await,
            Some("refresh_token") => refresh_grant(&auth, &client, &form).await,
            Some(other) => Err(err(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type {:?} is not supported; use authorization_code or refresh_token",
                    other.chars().take(64).collect::<String>()
                ),
            )),
            None => Err(err(ErrorCode::InvalidRequest, "grant_type is required")),
        }
    }
    .await;
    match result {
        Ok(body) => {
            let mut resp = (StatusCode::OK, Json(body)).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => {
            who.refused(&auth, &e);
            client_error_response(e, &headers)
        }
    }
}

/// Who sent a `/token` or `/revoke` request, as far as counting goes: the
/// client IP, and the client id it names (it may be unknown or lying: enough
/// to count its failures, never trusted for anything else).
struct Requester {
    ip: String,
    claimed: Option<String>,
}

impl Requester {
    /// Count the request against the IP's limit; refuse it when the IP or
    /// the client it names has failed too often (guessing codes, refresh
    /// tokens or secrets stops here).
    // A ready 429 as the error: boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    fn admit(
        auth: &Auth,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Requester, Response> {
        let ip = auth.client_key(peer, headers);
        auth.limits.token.check(&ip).map_err(too_many)?;
        let claimed = claimed_client_id(headers, body);
        let blocked = auth.limits.failed_grant_ip.blocked(&ip).or_else(|| {
            claimed
                .as_deref()
                .and_then(|c| auth.limits.failed_grant_client.blocked(c))
        });
        match blocked {
            Some(retry) => Err(too_many(retry)),
            None => Ok(Requester { ip, claimed }),
        }
    }

    /// A refused request: failed grants and client authentications count
    /// towards the limits above and leave an audit line (never the secret).
    fn refused(&self, auth: &Auth, e: &OAuthError) {
        if !matches!(e.code, ErrorCode::InvalidGrant | ErrorCode::InvalidClient) {
            return;
        }
        auth.limits.failed_grant_ip.record(&self.ip);
        if let Some(c) = self.claimed.as_deref() {
            auth.limits.failed_grant_client.record(c);
        }
        tracing::info!(
            target: "audit",
            ip = self.ip.as_str(),
            client_id = self.claimed.as_deref().unwrap_or("-"),
            error = e.code.as_str(),
            reason = e.description.as_ref(),
            "token request refused"
        );
    }
}

/// The client id a token request names (HTTP Basic user, else the form's
/// `client_id`), cut short: a key for counting failures, nothing more.
fn claimed_client_id(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let id = headers
        .get(header::AUTHORIZATION)
        .and_then(parse_basic)
        .map(|(id, _)| id)
        .or_else(|| {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v)
        })?;
    Some(id.chars().take(200).collect())
}

/// `invalid_client` after HTTP Basic gets `WWW-Authenticate: Basic` (RFC 6749 §5.2).
fn client_error_response(e: OAuthError, headers: &HeaderMap) -> Response {
    let basic = headers.contains_key(header::AUTHORIZATION);
    let code = e.code;
    let mut resp = e.into_response();
    if code == ErrorCode::InvalidClient && basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mcpgate\""),
        );
    }
    resp
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(err(
            ErrorCode::InvalidRequest,
            "send the parameters as a form (Content-Type: application/x-www-form-urlencoded)",
        ));
    }
    if body.len() > 16 * 1024 {
        return Err(err(ErrorCode::InvalidRequest, "the request is too large"));
    }
    // Repeated parameters are refused (RFC 6749 §3.2), which the form decoder
    // does for us by failing on a duplicate field.
    serde_urlencoded::from_bytes(body)
        .map_err(|e| err(ErrorCode::InvalidRequest, format!("malformed form: {e}")))
}

/// RFC 6749 §2.3: HTTP Basic (`client_secret_basic`), form fields
/// (`client_secret_post`), or just `client_id` for public clients (`none`).
async fn authenticate_client(
    auth: &Auth,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Client, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => Some(parse_basic(v).ok_or_else(|| {
            err(
                ErrorCode::InvalidClient,
                "the Authorization header is not valid HTTP Basic client authentication",
            )
        })?),
        None => None,
    };
    let (client_id, secret) = match (basic, &form.client_secret) {
        (Some(_), Some(_)) => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "use one client authentication method, not both HTTP Basic and client_secret",
            ));
        }
        (Some((id, secret)), None) => {
            if form.client_id.as_deref().is_some_and(|f| f != id) {
                return Err(err(
                    ErrorCode::InvalidClient,
                    "client_id differs from the HTTP Basic user",
                ));
            }
            (id, Some(secret))
        }
        (None, secret) => (
            form.client_id
                .clone()
                .ok_or_else(|| err(ErrorCode::InvalidClient, "client_id is required"))?,
            secret.clone(),
        ),
    };
    let client = auth.client(&client_id).await.map_err(|e| {
        if e.code == ErrorCode::ServerError {
            e
        } else {
            err(ErrorCode::InvalidClient, e.description)
        }
    })?;
    match (&client.secret_hash, secret) {
        (Some(_), Some(s)) if client.secret_matches(&s) => Ok(client),
        (Some(_), Some(_)) => Err(err(ErrorCode::InvalidClient, "wrong client secret")),
        (Some(_), None) => Err(err(
            ErrorCode::InvalidClient,
            "this client is confidential: authenticate with its client_secret (HTTP Basic or client_secret form field)",
        )),
        // A public client has no secret to check; one sent anyway proves nothing.
        (None, _) => Ok(client),
    }
}

fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let text = v.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// RFC 7009. Public clients revoke with their `client_id` alone (a peer demanded
/// a secret they do not have). Revoking either kind of token ends its family:
/// the refresh tokens at once, the access tokens at their next use.
pub async fn revoke(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match Requester::admit(&auth, peer, &headers, &body) {
        Ok(w) => w,
        Err(refused) => return refused,
    };
    let result = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate_client(&auth, &headers, &form).await?;
        let text = form
            .token
            .as_deref()
            .ok_or_else(|| err(ErrorCode::InvalidRequest, "token is required"))?;
        let family_and_client = if let Ok(t) = Token::<Refresh>::parse(text) {
            auth.store
                .get::<RefreshGrant>(&t.hash().to_hex())
                .await
                .map_err(store_failed)?
                .map(|g| (g.family, g.client_id))
        } else {
            auth.keys
                .verify_ignoring_expiry(text)
                .map(|c| (c.fam, c.client_id))
        };
        // Unknown or invalid tokens: 200 all the same (RFC 7009 §2.2).
        if let Some((family, owner)) = family_and_client {
            if owner != client.id {
                return Err(err(
                    ErrorCode::UnauthorizedClient,
                    "the token was issued to another client",
                ));
            }
            auth.revoke_family(&family, "revoked by the client").await;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            who.refused(&auth, &e);
            client_error_response(e, &headers)
        }
    }
}
