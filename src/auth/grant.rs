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
use std::time::{Duration, SystemTime};

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
use super::records::{CodeGrant, Family, RedeemedCode, RefreshGrant};
use super::token::{AuthorizationCode, Refresh, Token};
use super::{Audience, Auth, FamilyId};
use crate::caller::{ClientId, UserId};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::util::{now_unix, random_id, secure_eq};

/// How long a redeemed code is remembered for replay detection.
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
    let ip = auth.client_key(peer, &headers);
    if let Err(retry) = auth.limits.token.check(&ip) {
        return too_many(retry);
    }
    // The client as it names itself (it may be unknown or lying): enough to
    // count its failures, never trusted for anything else.
    let claimed = claimed_client_id(&headers, &body);
    // Too many failed grants from this address or for this client: guessing
    // codes, refresh tokens or secrets stops here.
    let blocked = auth.limits.failed_grant_ip.blocked(&ip).or_else(|| {
        claimed
            .as_deref()
            .and_then(|c| auth.limits.failed_grant_client.blocked(c))
    });
    if let Some(retry) = blocked {
        return too_many(retry);
    }
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
            if matches!(e.code, ErrorCode::InvalidGrant | ErrorCode::InvalidClient) {
                auth.limits.failed_grant_ip.record(&ip);
                if let Some(c) = claimed.as_deref() {
                    auth.limits.failed_grant_client.record(c);
                }
                tracing::info!(
                    target: "audit",
                    ip = ip.as_str(),
                    client_id = claimed.as_deref().unwrap_or("-"),
                    error = e.code.as_str(),
                    reason = e.description.as_ref(),
                    "token request refused"
                );
            }
            client_error_response(e, &headers)
        }
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

async fn code_grant(
    auth: &Auth,
    client: &Client,
    form: &TokenForm,
) -> Result<serde_json::Value, OAuthError> {
    let invalid = |m: &'static str| err(ErrorCode::InvalidGrant, m);
    let code_text = form
        .code
        .as_deref()
        .ok_or_else(|| err(ErrorCode::InvalidRequest, "code is required"))?;
    let code = Token::<AuthorizationCode>::parse(code_text).map_err(|e| {
        err(
            ErrorCode::InvalidGrant,
            format!("the code is not an authorization code of this gateway ({e})"),
        )
    })?;
    let key = code.hash().to_hex();
    let Some(grant) = auth
        .store
        .take::<CodeGrant>(&key)
        .await
        .map_err(store_failed)?
    else {
        if let Ok(Some(redeemed)) = auth.store.get::<RedeemedCode>(&key).await {
            if !redeemed.issued {
                // Its first redemption failed: nothing was issued, nothing to revoke.
                tracing::info!(
                    client_id = client.id.as_str(),
                    "an authorization code was presented again after a failed redemption"
                );
                return Err(invalid(
                    "the authorization code was already used (its redemption failed); start a new authorization",
                ));
            }
            tracing::warn!(
                target: "audit",
                client_id = client.id.as_str(),
                "authorization code replayed: the tokens issued for it are revoked"
            );
            auth.revoke_family(&redeemed.family, "authorization code replayed")
                .await;
            return Err(invalid(
                "the authorization code was already used; the tokens issued for it are now revoked",
            ));
        }
        return Err(invalid("the authorization code is unknown or expired"));
    };
    auth.store
        .put(
            &key,
            &RedeemedCode {
                family: grant.family.clone(),
                issued: false,
            },
            Some(SystemTime::now() + REDEEMED_MEMORY),
        )
        .await
        .map_err(store_failed)?;
    if grant.client_id != client.id {
        return Err(invalid(
            "the authorization code was issued to another client",
        ));
    }
    match form.redirect_uri.as_deref() {
        Some(r) if r == grant.redirect_uri => {}
        Some(_) => {
            return Err(invalid(
                "redirect_uri differs from the one in the authorization request",
            ));
        }
        None if !grant.redirect_uri_sent => {}
        None => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "redirect_uri is required and must equal the one in the authorization request",
            ));
        }
    }
    let verifier = form.code_verifier.as_deref().ok_or_else(|| {
        err(
            ErrorCode::InvalidRequest,
            "code_verifier is required (PKCE)",
        )
    })?;
    if !is_pkce_value(verifier) {
        return Err(err(
            ErrorCode::InvalidRequest,
            "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
        ));
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if !secure_eq(&computed, &grant.code_challenge) {
        return Err(invalid("code_verifier does not match the code_challenge"));
    }
    let audience = narrow_audience(auth, &grant.audience, form.resource.as_deref())?;
    let now = now_unix();
    auth.store
        .put(
            grant.family.as_str(),
            &Family {
                user: grant.user.clone(),
                client_id: grant.client_id.clone(),
                created_at: now,
                revoked_at: None,
                revoked_because: None,
            },
            Some(auth.family_expiry()),
        )
        .await
        .map_err(store_failed)?;
    // From here on tokens exist for this code: presenting it again is a replay.
    auth.store
        .put(
            &key,
            &RedeemedCode {
                family: grant.family.clone(),
                issued: true,
            },
            Some(SystemTime::now() + REDEEMED_MEMORY),
        )
        .await
        .map_err(store_failed)?;
    auth.touch_client(client).await;
    tracing::info!(
        user = grant.user.as_str(),
        client_id = client.id.as_str(),
        "tokens issued for an authorization code"
    );
    let issued = Issue {
        family: grant.family,
        client_id: grant.client_id,
        user: grant.user,
        identity: grant.identity,
        token_scope: grant.scope.clone(),
        grant_scope: grant.scope,
        grant_audience: grant.audience,
        token_audience: audience,
    };
    issue_tokens(auth, issued).await
}

async fn refresh_grant(
    auth: &Auth,
    client: &Client,
    form: &TokenForm,
) -> Result<serde_json::Value, OAuthError> {
    let text = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| err(ErrorCode::InvalidRequest, "refresh_token is required"))?;
    let token = Token::<Refresh>::parse(text).map_err(|e| {
        err(
            ErrorCode::InvalidGrant,
            format!("not a refresh token of this gateway ({e})"),
        )
    })?;
    let key = token.hash().to_hex();
    let Some(mut grant) = auth
        .store
        .get::<RefreshGrant>(&key)
        .await
        .map_err(store_failed)?
    else {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the refresh token is unknown, expired or revoked; sign in again",
        ));
    };
    if grant.client_id != client.id {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the refresh token was issued to another client",
        ));
    }
    if auth.is_revoked(&grant.family) {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the refresh token was revoked; sign in again",
        ));
    }
    if let Err(why) = auth.still_allowed(&grant.identity) {
        auth.revoke_family(&grant.family, "no longer allowed by the access policy")
            .await;
        return Err(err(
            ErrorCode::InvalidGrant,
            format!(
                "{} may no longer use this gateway: {why}",
                grant.identity.email
            ),
        ));
    }
    let now = now_unix();
    match grant.rotated_at {
        Some(at) if now - at > auth.settings.refresh_grace.as_secs() as i64 => {
            auth.revoke_family(&grant.family, "rotated refresh token reused")
                .await;
            return Err(err(
                ErrorCode::InvalidGrant,
                "the refresh token was already used; for safety every token of this sign-in is now revoked; sign in again",
            ));
        }
        Some(_) => {}
        None => {
            grant.rotated_at = Some(now);
            let expires = SystemTime::now() + auth.settings.refresh_ttl;
            auth.store
                .put(&key, &grant, Some(expires))
                .await
                .map_err(store_failed)?;
        }
    }
    let scope = match form.scope.as_deref() {
        Some(requested) => {
            let requested: Vec<String> = requested
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if let Some(extra) = requested.iter().find(|s| !grant.scope.contains(s)) {
                return Err(err(
                    ErrorCode::InvalidScope,
                    format!("scope {extra:?} was not granted to this refresh token"),
                ));
            }
            requested
        }
        None => grant.scope.clone(),
    };
    let audience = narrow_audience(auth, &grant.audience, form.resource.as_deref())?;
    auth.touch_client(client).await;
    // The family lives as long as its newest refresh token can.
    if let Ok(Some(family)) = auth.store.get::<Family>(grant.family.as_str()).await {
        let _ = auth
            .store
            .put(grant.family.as_str(), &family, Some(auth.family_expiry()))
            .await;
    }
    issue_tokens(
        auth,
        Issue {
            family: grant.family,
            client_id: grant.client_id,
            user: grant.user,
            identity: grant.identity,
            token_scope: scope,
            // RFC 6749 §6: a narrower request narrows this access token only.
            grant_scope: grant.scope,
            grant_audience: grant.audience,
            token_audience: audience,
        },
    )
    .await
}

/// A token request may name a resource (RFC 8707 §2.2): the same one as the
/// grant, or one service when the grant covers the whole gateway.
fn narrow_audience(
    auth: &Auth,
    granted: &Audience,
    resource: Option<&str>,
) -> Result<Audience, OAuthError> {
    let Some(r) = resource else {
        return Ok(granted.clone());
    };
    let requested = auth.parse_resource(r).ok_or_else(|| {
        err(
            ErrorCode::InvalidTarget,
            "resource is not served by this gateway",
        )
    })?;
    match (granted, &requested) {
        (a, b) if a == b => Ok(requested),
        (Audience::Gateway, Audience::Service(_)) => Ok(requested),
        _ => Err(err(
            ErrorCode::InvalidTarget,
            "resource differs from the one this grant was issued for",
        )),
    }
}

/// The domain `policies` may trust for this person (see `AccessClaims::dom`).
fn policy_domain(identity: &super::idp::Identity) -> Option<String> {
    if identity.provider == "google" {
        return identity.domain.clone();
    }
    identity
        .email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
}

struct Issue {
    family: FamilyId,
    client_id: ClientId,
    user: UserId,
    identity: super::idp::Identity,
    /// What this access token carries.
    token_scope: Vec<String>,
    /// What the refresh token keeps.
    grant_scope: Vec<String>,
    /// What the refresh token may later ask for.
    grant_audience: Audience,
    /// What this access token is for.
    token_audience: Audience,
}

async fn issue_tokens(auth: &Auth, i: Issue) -> Result<serde_json::Value, OAuthError> {
    let now = now_unix();
    let ttl = auth.settings.token_ttl.as_secs() as i64;
    let claims = AccessClaims {
        iss: auth.issuer.clone(),
        sub: i.user.clone(),
        aud: auth.audience_claim(&i.token_audience),
        exp: now + ttl,
        iat: now,
        jti: random_id(),
        client_id: i.client_id.clone(),
        scope: i.token_scope.join(" "),
        email: i.identity.email.clone(),
        fam: i.family.clone(),
        // GitHub organizations are `org:<login>`, apart from IdP groups.
        groups: i
            .identity
            .groups
            .iter()
            .cloned()
            .chain(i.identity.orgs.iter().map(|o| format!("org:{o}")))
            .collect(),
        dom: policy_domain(&i.identity),
    };
    let access = auth.keys.issue(&claims).map_err(|e| {
        tracing::error!("cannot sign an access token: {e}");
        err(ErrorCode::ServerError, "cannot sign the access token")
    })?;
    let refresh = Token::<Refresh>::generate();
    let record = RefreshGrant {
        family: i.family,
        client_id: i.client_id,
        scope: i.grant_scope,
        audience: i.grant_audience,
        user: i.user,
        identity: i.identity,
        rotated_at: None,
    };
    auth.store
        .put(
            &refresh.hash().to_hex(),
            &record,
            Some(SystemTime::now() + auth.settings.refresh_ttl),
        )
        .await
        .map_err(store_failed)?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh.reveal(),
        "scope": i.token_scope.join(" "),
    }))
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
    let ip = auth.client_key(peer, &headers);
    if let Err(retry) = auth.limits.token.check(&ip) {
        return too_many(retry);
    }
    // The client as it names itself (it may be unknown or lying): enough to
    // count its failures, never trusted for anything else.
    let claimed = claimed_client_id(&headers, &body);
    // Too many failed grants from this address or for this client: guessing
    // codes, refresh tokens or secrets stops here.
    let blocked = auth.limits.failed_grant_ip.blocked(&ip).or_else(|| {
        claimed
            .as_deref()
            .and_then(|c| auth.limits.failed_grant_client.blocked(c))
    });
    if let Some(retry) = blocked {
        return too_many(retry);
    }
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
        Err(e) => client_error_response(e, &headers),
    }
}
