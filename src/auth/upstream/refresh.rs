//! A person's upstream token as a backend gets it: refreshed first when it is
//! about to expire, once per person and service however many sessions start
//! together; a failed refresh tells the person to connect again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::tokens::*;
use super::*;

/// One lock per (person, service), so that sessions starting together refresh
/// once: with rotating refresh tokens, a second refresh with the same token
/// fails, and some providers then revoke the whole grant.
static REFRESHING: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub(super) fn refresh_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
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
    let grant = Grant::RefreshToken {
        refresh_token: &refresh,
    };
    match request_tokens(&client, grant).await {
        Ok(tokens) => {
            let keep = tokens
                .refresh_token
                .as_ref()
                .map_or(refresh.as_str(), Secret::expose);
            store(auth, user, service, &tokens, Some(keep)).await?;
            tracing::info!(
                user = user.as_str(),
                service,
                "upstream OAuth token refreshed"
            );
            Ok(tokens.access_token.into_inner())
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

pub(super) fn failed(auth: &Auth, service: &str, reason: String) -> UserTokenError {
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
