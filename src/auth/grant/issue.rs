//! Issuing tokens for a grant: the audience narrowed to what the client asked
//! for, the access token signed, the refresh token stored as a hash.

use std::time::SystemTime;

use super::*;
use crate::auth::records::RefreshGrant;

/// A token request may name a resource (RFC 8707 §2.2): the same one as the
/// grant, or one service when the grant covers the whole gateway.
pub(super) fn narrow_audience(
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
pub(super) fn policy_domain(identity: &crate::auth::idp::Identity) -> Option<String> {
    if identity.provider == "google" {
        return identity.domain.clone();
    }
    identity
        .email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
}

pub(super) struct Issue {
    pub(super) family: FamilyId,
    pub(super) client_id: ClientId,
    pub(super) user: UserId,
    pub(super) identity: crate::auth::idp::Identity,
    /// What this access token carries.
    pub(super) token_scope: Vec<String>,
    /// What the refresh token keeps.
    pub(super) grant_scope: Vec<String>,
    /// What the refresh token may later ask for.
    pub(super) grant_audience: Audience,
    /// What this access token is for.
    pub(super) token_audience: Audience,
}

pub(super) async fn issue_tokens(auth: &Auth, i: Issue) -> Result<serde_json::Value, OAuthError> {
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
