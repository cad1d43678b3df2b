//! The authorization code grant: the code taken from the store atomically (one
//! redemption wins), checked against its client, redirect URI and PKCE
//! challenge, then tokens issued. A code presented again after tokens were
//! issued is a replay and revokes them; after a failed redemption it is not.

use std::time::SystemTime;

use super::issue::{Issue, issue_tokens, narrow_audience};
use super::*;
use crate::auth::records::{CodeGrant, Family, RedeemedCode};

pub(super) async fn code_grant(
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
