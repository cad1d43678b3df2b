//! Access tokens: ES256-signed JWTs (RFC 9068 `at+jwt`) with a `kid`, the key
//! kept in the store and published as a JWKS.
//!
//! Why JWTs rather than opaque tokens with a lookup: validation needs no store
//! round trip, so several gateway instances (a later issue) validate each
//! other's tokens with only the shared key set; revocation is a small in-memory
//! set of revoked token families, refreshed from the store. An ECDSA check costs
//! tens of microseconds, so verified tokens are cached until they expire (a
//! bounded map keyed by the token text), keeping per-request cost near zero.
//!
//! The header's `typ` must be `at+jwt`: nothing else mcpgate issues is a JWT, and
//! an ID token or a token from another issuer sharing the key would still fail
//! on `typ`, `iss` and `aud`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::FamilyId;
use super::records::SigningKeyRecord;
use crate::caller::{ClientId, UserId};
use crate::store::Store;
use crate::util::now_unix;

pub const TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: UserId,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: ClientId,
    pub scope: String,
    pub email: String,
    /// The token family (one authorization and its refreshes), for revocation.
    pub fam: FamilyId,
    /// The person's groups (identity provider groups or roles, GitHub
    /// organizations, local users' `groups`), for `policies`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The domain that proves membership, for `@domain` in `policies`: Google's
    /// verified Workspace domain (`hd`), never a consumer account's address;
    /// for other providers, the verified email's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dom: Option<String>,
}

impl AccessClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

struct VerifyKey {
    kid: String,
    key: DecodingKey,
}

pub struct Keys {
    issuer: String,
    signing_kid: String,
    signing: EncodingKey,
    verify: Vec<VerifyKey>,
    jwks: JwkSet,
    cache: Mutex<HashMap<String, (AccessClaims, Instant)>>,
}

const CACHE_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the token signing key in the store cannot be used ({0}); delete the signing_key records to make a new one"
    )]
    BadStoredKey(String),
    #[error("cannot create a token signing key: {0}")]
    Generate(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Keys {
    /// The key set from the store; on first start, a new key is made and kept.
    pub async fn load_or_create(store: &Store, issuer: &str) -> Result<Keys, KeyError> {
        let mut records: Vec<SigningKeyRecord> = store
            .list::<SigningKeyRecord>()
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let record = generate()?;
            store.put(&record.kid, &record, None).await?;
            records.push(record);
        }
        records.sort_by_key(|r| r.created_at);
        Keys::from_records(&records, issuer)
    }

    fn from_records(records: &[SigningKeyRecord], issuer: &str) -> Result<Keys, KeyError> {
        let mut verify = Vec::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for r in records {
            let der = STANDARD
                .decode(&r.pkcs8)
                .map_err(|e| KeyError::BadStoredKey(e.to_string()))?;
            let encoding = EncodingKey::from_ec_der(&der);
            let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
                .map_err(|e| KeyError::BadStoredKey(e.to_string()))?;
            jwk.common.key_id = Some(r.kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            let key =
                DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::BadStoredKey(e.to_string()))?;
            verify.push(VerifyKey {
                kid: r.kid.clone(),
                key,
            });
            jwks.push(jwk);
            if r.retired_at.is_none() {
                signing = Some((r.kid.clone(), encoding));
            }
        }
        let (signing_kid, signing) =
            signing.ok_or_else(|| KeyError::BadStoredKey("no current key".into()))?;
        Ok(Keys {
            issuer: issuer.to_string(),
            signing_kid,
            signing,
            verify,
            jwks: JwkSet { keys: jwks },
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn issue(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    /// Check signature, type, issuer and expiry (the audience is the caller's, who
    /// knows which resource was asked for). Verified tokens are cached until expiry.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, &'static str> {
        let now = now_unix();
        if let Ok(cache) = self.cache.lock()
            && let Some((claims, _)) = cache.get(token)
        {
            if claims.exp > now {
                return Ok(claims.clone());
            }
            return Err("the access token has expired");
        }
        let claims = self.verify_uncached(token)?;
        if claims.exp <= now {
            return Err("the access token has expired");
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (c, _)| c.exp > now);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(token.to_string(), (claims.clone(), Instant::now()));
        }
        Ok(claims)
    }

    /// For revocation: a genuine token of ours, expired or not.
    pub fn verify_ignoring_expiry(&self, token: &str) -> Option<AccessClaims> {
        self.check(token, false).ok()
    }

    fn verify_uncached(&self, token: &str) -> Result<AccessClaims, &'static str> {
        self.check(token, true)
    }

    fn check(&self, token: &str, expiry: bool) -> Result<AccessClaims, &'static str> {
        if token.len() > 8192 {
            return Err("the access token is too long");
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "the access token is not a JWT")?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err("the token is not an access token");
        }
        if header.alg != Algorithm::ES256 {
            return Err("the access token is not signed with ES256");
        }
        let kid = header.kid.ok_or("the access token has no key id")?;
        let key = self
            .verify
            .iter()
            .find(|k| k.kid == kid)
            .ok_or("the access token was signed with an unknown key")?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        validation.leeway = 5;
        validation.validate_exp = expiry;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the access token has expired",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    "the access token was issued by another server"
                }
                _ => "the access token is invalid",
            })
    }

    /// Forget cached verifications (after a revocation).
    pub fn forget_cached(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}

fn generate() -> Result<SigningKeyRecord, KeyError> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let now = now_unix();
    let kid = format!("mg-{now}-{}", &crate::util::random_id()[..8]);
    Ok(SigningKeyRecord {
        kid,
        pkcs8: STANDARD.encode(doc.as_ref()),
        created_at: now,
        retired_at: None,
    })
}

/// Retire the current signing key and make a new one (`mcpgate rotate-signing-key`).
/// Tokens signed with the old key stay valid until they expire.
pub async fn rotate(store: &Store) -> Result<String, KeyError> {
    let now = now_unix();
    for (kid, mut r) in store.list::<SigningKeyRecord>().await? {
        if r.retired_at.is_none() {
            r.retired_at = Some(now);
            store.put(&kid, &r, None).await?;
        }
    }
    let record = generate()?;
    store.put(&record.kid, &record, None).await?;
    Ok(record.kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://gw.example".into(),
            sub: UserId::new("local:a@example.com"),
            aud: "https://gw.example/a/mcp".into(),
            exp,
            iat: now_unix(),
            jti: "j".into(),
            client_id: ClientId::new("c"),
            scope: "mcp".into(),
            email: "a@example.com".into(),
            fam: FamilyId::new("f"),
            groups: Vec::new(),
            dom: None,
        }
    }

    #[tokio::test]
    async fn issue_verify_and_refuse() {
        let store = Store::memory();
        let keys = Keys::load_or_create(&store, "https://gw.example")
            .await
            .unwrap();
        let t = keys.issue(&claims(now_unix() + 60)).unwrap();
        assert_eq!(keys.verify(&t).unwrap().email, "a@example.com");
        // same key, another issuer
        let other = Keys::load_or_create(&store, "https://other.example")
            .await
            .unwrap();
        assert!(other.verify(&t).is_err());
        // expired
        let t = keys.issue(&claims(now_unix() - 60)).unwrap();
        assert_eq!(keys.verify(&t).unwrap_err(), "the access token has expired");
        // wrong typ: a plain JWT signed by the same key
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.signing_kid.clone());
        let plain = jsonwebtoken::encode(&header, &claims(now_unix() + 60), &keys.signing).unwrap();
        assert_eq!(
            keys.verify(&plain).unwrap_err(),
            "the token is not an access token"
        );
        // tampered payload
        let good = keys.issue(&claims(now_unix() + 60)).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims(now_unix() + 99999)).unwrap());
        parts[1] = &forged;
        assert!(keys.verify(&parts.join(".")).is_err());
        // the key persists: a second load verifies the first's tokens
        let again = Keys::load_or_create(&store, "https://gw.example")
            .await
            .unwrap();
        assert!(again.verify(&good).is_ok());
        // rotation: old tokens still verify, new ones use a new kid
        rotate(&store).await.unwrap();
        let rotated = Keys::load_or_create(&store, "https://gw.example")
            .await
            .unwrap();
        assert!(rotated.verify(&good).is_ok());
        assert_ne!(rotated.signing_kid, keys.signing_kid);
        assert_eq!(rotated.jwks().keys.len(), 2);
    }
}
