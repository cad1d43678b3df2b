//! Who a `client_id` is, and dynamic client registration (RFC 7591).
//!
//! Three kinds of client, one [`Client`] type: configured in `proxy.auth.clients`,
//! registered through `/register`, or named by a Client ID Metadata Document URL.
//! Nothing else is a client: not the gateway's own upstream client id (a peer
//! accepted that with any redirect URI), not an unknown id with a plausible URI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Auth;
use super::records::{ClientFingerprint, RegisteredClient};
use crate::caller::ClientId;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::RedirectUri;
use crate::util::{now_unix, random_id, secure_eq, sha256_hex};

#[derive(Debug, Clone)]
pub struct Client {
    pub id: ClientId,
    pub name: Option<String>,
    pub redirect_uris: Vec<RedirectUri>,
    /// SHA-256 hex of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub kind: ClientKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Configured,
    Registered,
    MetadataDocument,
}

impl Client {
    /// The name for the consent page: the client's own claim, or its id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }

    /// Check the secret a confidential client presented.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_hash {
            Some(h) => secure_eq(h, &sha256_hex(presented.as_bytes())),
            None => false,
        }
    }
}

const MAX_REDIRECT_URIS: usize = 20;

impl Auth {
    /// Look a client up. `invalid_client` when it is not one.
    pub async fn client(&self, client_id: &str) -> Result<Client, OAuthError> {
        let unknown = || {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "unknown client_id; register the client first (POST /register) or use a Client ID Metadata Document URL",
            )
        };
        if client_id.is_empty() || client_id.len() > 2048 {
            return Err(unknown());
        }
        if let Some(c) = self
            .settings
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Ok(Client {
                id: ClientId::new(c.client_id.clone()),
                name: c.name.clone(),
                redirect_uris: c
                    .redirect_uris
                    .iter()
                    .filter_map(|r| RedirectUri::register(r).ok())
                    .collect(),
                secret_hash: c.secret.as_ref().map(|s| sha256_hex(s.expose().as_bytes())),
                kind: ClientKind::Configured,
            });
        }
        if let Some(fetcher) = &self.cimd
            && fetcher.is_metadata_url(client_id)
        {
            let doc = fetcher.fetch(client_id).await?;
            return Ok(Client {
                id: ClientId::new(doc.client_id),
                name: doc.client_name,
                redirect_uris: doc.redirect_uris,
                secret_hash: None,
                kind: ClientKind::MetadataDocument,
            });
        }
        let record = self
            .store
            .get::<RegisteredClient>(client_id)
            .await
            .map_err(|e| {
                tracing::error!("client lookup failed: {e}");
                OAuthError::new(ErrorCode::ServerError, "the gateway's store is unavailable")
            })?
            .ok_or_else(unknown)?;
        Ok(Client {
            id: record.client_id,
            name: record.name,
            redirect_uris: record
                .redirect_uris
                .iter()
                .filter_map(|r| RedirectUri::register(r).ok())
                .collect(),
            secret_hash: record.secret_hash,
            kind: ClientKind::Registered,
        })
    }

    /// A registered client was used: push its expiry out (at most once a day, to
    /// spare the store a write per token).
    pub async fn touch_client(&self, client: &Client) {
        if client.kind != ClientKind::Registered {
            return;
        }
        let Ok(Some(mut record)) = self.store.get::<RegisteredClient>(client.id.as_str()).await
        else {
            return;
        };
        let now = now_unix();
        if now - record.last_used_at < 24 * 3600 {
            return;
        }
        record.last_used_at = now;
        let expires = SystemTime::now() + self.settings.client_expiry;
        if let Err(e) = self
            .store
            .put(client.id.as_str(), &record, Some(expires))
            .await
        {
            tracing::warn!("cannot extend a client's registration: {e}");
        }
    }
}

/// RFC 7591 §2 client metadata (the parts that matter here; others are ignored).
#[derive(Debug, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    client_uri: Option<String>,
    #[serde(default)]
    logo_uri: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

pub async fn register(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !auth.settings.registration_open {
        return OAuthError::new(
            ErrorCode::AccessDenied,
            "dynamic client registration is closed on this gateway; ask its administrator for a client id",
        )
        .into_response();
    }
    if let Err(retry) = auth.limits.register.check(&auth.client_key(peer, &headers)) {
        return too_many(retry);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "send the client metadata as JSON (Content-Type: application/json)",
        )
        .into_response();
    }
    if body.len() > 64 * 1024 {
        return OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "client metadata is too large (over 64 KiB)",
        )
        .into_response();
    }
    let req: RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("client metadata is not valid: {e}"),
            )
            .into_response();
        }
    };
    match register_client(&auth, req).await {
        Ok((record, secret)) => {
            let mut body = json!({
                "client_id": record.client_id,
                "client_id_issued_at": record.created_at,
                "redirect_uris": record.redirect_uris,
                "token_endpoint_auth_method": record.token_endpoint_auth_method,
                "grant_types": record.grant_types,
                "response_types": ["code"],
            });
            if let Some(n) = &record.name {
                body["client_name"] = json!(n);
            }
            if let Some(s) = &record.scope {
                body["scope"] = json!(s);
            }
            if let Some(u) = &record.client_uri {
                body["client_uri"] = json!(u);
            }
            if let Some(u) = &record.logo_uri {
                body["logo_uri"] = json!(u);
            }
            if let Some(secret) = secret {
                body["client_secret"] = json!(secret);
                body["client_secret_expires_at"] = json!(0);
            }
            let mut resp = (StatusCode::CREATED, Json(body)).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn register_client(
    auth: &Auth,
    req: RegistrationRequest,
) -> Result<(RegisteredClient, Option<String>), OAuthError> {
    let bad = |m: String| OAuthError::new(ErrorCode::InvalidClientMetadata, m);
    let uris = req.redirect_uris.unwrap_or_default();
    if uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris is required (the authorization code flow sends the code there)",
        ));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(bad(format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
    }
    for u in &uris {
        RedirectUri::register(u)?;
    }
    // RFC 7591 §2: the default is client_secret_basic.
    let method = req
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".into());
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(bad(format!(
            "token_endpoint_auth_method {method:?} is not supported; use none, client_secret_basic or client_secret_post"
        )));
    }
    let grant_types = req
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(g) = grant_types
        .iter()
        .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(bad(format!(
            "grant type {g:?} is not supported; use authorization_code and refresh_token"
        )));
    }
    if let Some(r) = req
        .response_types
        .as_ref()
        .and_then(|r| r.iter().find(|r| *r != "code"))
    {
        return Err(bad(format!(
            "response type {r:?} is not supported; only \"code\""
        )));
    }
    let name = req
        .client_name
        .map(|n| n.trim().chars().take(100).collect::<String>())
        .filter(|n| !n.is_empty());
    let https_only = |u: Option<String>| u.filter(|u| u.starts_with("https://") && u.len() <= 2048);
    let public = method == "none";
    let mut sorted = uris.clone();
    sorted.sort();
    let fingerprint = sha256_hex(
        serde_json::to_string(&json!([name, sorted, method, grant_types, req.scope]))
            .unwrap_or_default()
            .as_bytes(),
    );
    let expires = SystemTime::now() + auth.settings.client_expiry;
    let store_err = |e: crate::store::StoreError| {
        tracing::error!("registration failed: {e}");
        OAuthError::new(ErrorCode::ServerError, "the gateway's store is unavailable")
    };
    // The same public client registering again (Claude Code does so on every
    // login) gets its existing record back rather than a new one each time.
    if public
        && let Some(fp) = auth
            .store
            .get::<ClientFingerprint>(&fingerprint)
            .await
            .map_err(store_err)?
        && let Some(mut existing) = auth
            .store
            .get::<RegisteredClient>(fp.client_id.as_str())
            .await
            .map_err(store_err)?
    {
        existing.last_used_at = now_unix();
        auth.store
            .put(existing.client_id.as_str(), &existing, Some(expires))
            .await
            .map_err(store_err)?;
        auth.store
            .put(&fingerprint, &fp, Some(expires))
            .await
            .map_err(store_err)?;
        return Ok((existing, None));
    }
    let secret = (!public).then(|| format!("mgcs_{}{}", random_id(), random_id()));
    let now = now_unix();
    let record = RegisteredClient {
        client_id: ClientId::new(format!("mgc-{}", random_id())),
        secret_hash: secret.as_ref().map(|s| sha256_hex(s.as_bytes())),
        redirect_uris: uris,
        name,
        token_endpoint_auth_method: method,
        grant_types,
        scope: req.scope,
        client_uri: https_only(req.client_uri),
        logo_uri: https_only(req.logo_uri),
        created_at: now,
        last_used_at: now,
        fingerprint: fingerprint.clone(),
    };
    auth.store
        .put(record.client_id.as_str(), &record, Some(expires))
        .await
        .map_err(store_err)?;
    if public {
        auth.store
            .put(
                &fingerprint,
                &ClientFingerprint {
                    client_id: record.client_id.clone(),
                },
                Some(expires),
            )
            .await
            .map_err(store_err)?;
    }
    tracing::info!(client_id = record.client_id.as_str(), name = ?record.name, "client registered");
    Ok((record, secret))
}

/// 429 with `Retry-After`, in the OAuth error shape.
pub fn too_many(retry: Duration) -> Response {
    let mut resp = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many requests from this address; wait and try again",
    )
    .into_response();
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
