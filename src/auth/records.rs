//! What the authorization server keeps in the store, one type per record kind.
//!
//! Secrets are never stored: refresh tokens, codes and client secrets are keyed
//! or compared by their SHA-256 hash ([`crate::auth::token::TokenHash`]).

use serde::{Deserialize, Serialize};

use super::idp::Identity;
use super::{Audience, FamilyId};
use crate::caller::{ClientId, UserId};
use crate::store::Record;

/// A client registered through `/register`. Key: its client id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredClient {
    pub client_id: ClientId,
    /// SHA-256 (hex) of the secret, for confidential clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub name: Option<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Fingerprint of the registration metadata, so a client that registers again
    /// with the same metadata gets the same record instead of a new one.
    pub fingerprint: String,
}

impl Record for RegisteredClient {
    const KIND: &'static str = "client";
}

/// Fingerprint -> client id, for public clients re-registering the same metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientFingerprint {
    pub client_id: ClientId,
}

impl Record for ClientFingerprint {
    const KIND: &'static str = "client_fingerprint";
}

/// An authorization request between `/authorize` and the code: kept while the
/// person signs in and consents. Key: hash of its `Token<LoginState>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: ClientId,
    pub client_name: Option<String>,
    /// Exactly as the client sent it (the token request must repeat it).
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: Vec<String>,
    pub audience: Audience,
    /// Hash of the browser cookie this request belongs to: a request started in one
    /// browser cannot be finished from another.
    pub browser: String,
    /// Hash of the CSRF value its forms carry.
    pub csrf: String,
    /// The upstream login in progress (nonce, PKCE verifier), serialized.
    pub upstream: Option<serde_json::Value>,
    /// A sign-in to the gateway's own pages (`/my/...`), not for a client:
    /// `redirect_uri` is the page to return to.
    #[serde(default)]
    pub self_service: bool,
}

impl Record for PendingAuthorization {
    const KIND: &'static str = "pending_authorization";
}

/// A browser's sign-in at the gateway. Key: hash of the browser cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserSession {
    pub identity: Identity,
    pub user: UserId,
    pub signed_in_at: i64,
    /// Hash of the CSRF value of the `/my/...` pages' forms.
    #[serde(default)]
    pub csrf: Option<String>,
}

impl Record for BrowserSession {
    const KIND: &'static str = "browser_session";
}

/// An authorization code. Key: hash of the `Token<AuthorizationCode>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: ClientId,
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI (the token
    /// request must repeat it only then, RFC 6749 §4.1.3).
    pub redirect_uri_sent: bool,
    pub code_challenge: String,
    pub scope: Vec<String>,
    pub audience: Audience,
    pub user: UserId,
    /// Who signed in, kept so every refresh can re-check the access policy.
    pub identity: Identity,
    /// The token family this code starts; known in advance so that a replayed
    /// code can revoke what the first redemption issued.
    pub family: FamilyId,
}

impl Record for CodeGrant {
    const KIND: &'static str = "code";
}

/// A redeemed code, remembered for a while to detect replay. Key: code hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeemedCode {
    pub family: FamilyId,
    /// Whether tokens were issued for it: a code whose redemption failed
    /// (wrong verifier, client or redirect URI) is used up, but presenting it
    /// again is no replay of anything issued.
    #[serde(default = "issued_by_default")]
    pub issued: bool,
}

/// Records written before `issued` existed were written only on success paths
/// that went on to issue tokens: treat them as issued (the safe reading).
fn issued_by_default() -> bool {
    true
}

impl Record for RedeemedCode {
    const KIND: &'static str = "redeemed_code";
}

/// A refresh token. Key: hash of the `Token<Refresh>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub family: FamilyId,
    pub client_id: ClientId,
    pub scope: Vec<String>,
    pub audience: Audience,
    pub user: UserId,
    pub identity: Identity,
    /// Set when it was exchanged; it then works only within the grace window.
    pub rotated_at: Option<i64>,
}

impl Record for RefreshGrant {
    const KIND: &'static str = "refresh";
}

/// A revoked token family, kept until every token of it has expired. Key: family id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedFamily {
    pub revoked_at: i64,
    pub reason: String,
}

impl Record for RevokedFamily {
    const KIND: &'static str = "revoked_family";
}

/// A token family: everything issued from one authorization. Key: family id.
/// Its expiry moves with each refresh, so it lives as long as its tokens can.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Family {
    pub user: UserId,
    pub client_id: ClientId,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_because: Option<String>,
}

impl Record for Family {
    const KIND: &'static str = "family";
}

/// A person's consent for one client. Key: `<user>\n<client id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consent {
    pub user: UserId,
    pub client_id: ClientId,
    pub client_name: Option<String>,
    pub scope: Vec<String>,
    /// What was consented to: one service, or the whole gateway.
    pub audience: Audience,
    pub granted_at: i64,
}

impl Record for Consent {
    const KIND: &'static str = "consent";
}

impl Consent {
    pub fn key(user: &UserId, client: &ClientId) -> String {
        format!("{}\n{}", user.as_str(), client.as_str())
    }
}

/// A token signing key (PKCS#8, base64). Key: its `kid`.
#[derive(Clone, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub pkcs8: String,
    pub created_at: i64,
    /// Retired keys still verify tokens until they expire, but sign nothing.
    pub retired_at: Option<i64>,
}

impl Record for SigningKeyRecord {
    const KIND: &'static str = "signing_key";
}
