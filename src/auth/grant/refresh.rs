//! The refresh token grant: rotation on every use, a short grace window for
//! parallel refreshes from the same stored token, family revocation on reuse
//! after it, and the access policy checked again.

use std::time::SystemTime;

use super::issue::{Issue, issue_tokens, narrow_audience};
use super::*;
use crate::auth::records::{Family, RefreshGrant};

pub(super) async fn refresh_grant(
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
