//! OpenID Connect (and Google, which is one): discovery, the authorization
//! request, and the verified ID token.
//!
//! `openidconnect` does discovery (fetching and checking the metadata and key
//! set). The ID token is verified with `jsonwebtoken` against our own copy of
//! the key set, for two reasons: the key set must be re-fetched when the
//! provider rotates keys (Google does, every few days) without restarting, and
//! Google has sent `email_verified` as the string `"true"`, which
//! `openidconnect` (built without its `accept-string-booleans` feature) refuses
//! along with the whole token.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use openidconnect::core::{CoreClientAuthMethod, CoreProviderMetadata};
use openidconnect::{DiscoveryError, IssuerUrl};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use url::Url;

use super::claims::{display_name, groups_in, string_claim, verified_claim};
use super::error::{IdTokenProblem, IdpError};
use super::http::{UpstreamHttp, UpstreamHttpError, credentials, endpoint_url, exchange_code};
use super::{Identity, OidcSettings};
use crate::oauth::client::{AuthMethod, shown};

const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";
const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
/// Clock skew tolerated between us and the provider, in seconds.
const LEEWAY: u64 = 60;
/// Asymmetric algorithms only: with a symmetric one the "key" would be our own
/// client secret, and anyone holding a JWKS entry of type `oct` could mint tokens.
const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A discovered OpenID Connect provider. Cheap to clone: clones share the
/// metadata and the cached keys.
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    google: bool,
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    client_auth: AuthMethod,
    scope: String,
    keys: RwLock<Vec<Jwk>>,
    http: UpstreamHttp,
}

impl fmt::Debug for Oidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.inner;
        f.debug_struct("Oidc")
            .field("settings", &o.settings)
            .field("issuer", &o.issuer)
            .field("authorization_endpoint", &o.authorization_endpoint.as_str())
            .field("token_endpoint", &o.token_endpoint.as_str())
            .field(
                "userinfo_endpoint",
                &o.userinfo_endpoint.as_ref().map(Url::as_str),
            )
            .field("jwks_uri", &o.jwks_uri.as_str())
            .field("client_auth", &o.client_auth)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub(super) async fn discover(settings: OidcSettings, google: bool) -> Result<Oidc, IdpError> {
        let given = settings.issuer_url.trim();
        // The configuration accepts the discovery URL too; the issuer is what
        // precedes the suffix, kept byte for byte (a trailing slash is part of
        // some issuers, Auth0's for one, and must match the tokens' `iss`).
        let issuer = given.strip_suffix(DISCOVERY_SUFFIX).unwrap_or(given);
        let discovery_url = format!("{}{DISCOVERY_SUFFIX}", issuer.trim_end_matches('/'));
        let fail = |reason: String| IdpError::Discovery {
            url: discovery_url.clone(),
            reason,
        };
        let bad_endpoint = |e: crate::oauth::client::EndpointError| fail(e.to_string());
        if settings.client_id.is_empty() {
            return Err(IdpError::Config("the client id is empty".into()));
        }
        endpoint_url("the issuer URL", issuer, settings.allow_insecure_http)
            .map_err(bad_endpoint)?;
        let issuer_url = IssuerUrl::new(issuer.to_string())
            .map_err(|e| fail(format!("the issuer is not a URL: {e}")))?;

        let http = UpstreamHttp::new();
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| fail(discovery_reason(e)))?;

        let allow = settings.allow_insecure_http;
        let authorization_endpoint = endpoint_url(
            "its authorization_endpoint",
            metadata.authorization_endpoint().as_str(),
            allow,
        )
        .map_err(bad_endpoint)?;
        let token_endpoint = metadata
            .token_endpoint()
            .ok_or_else(|| fail("the provider metadata has no token_endpoint".into()))
            .and_then(|u| {
                endpoint_url("its token_endpoint", u.as_str(), allow).map_err(bad_endpoint)
            })?;
        let userinfo_endpoint = match metadata.userinfo_endpoint() {
            Some(u) => Some(
                endpoint_url("its userinfo_endpoint", u.as_str(), allow).map_err(bad_endpoint)?,
            ),
            None => None,
        };
        let jwks_uri = endpoint_url("its jwks_uri", metadata.jwks_uri().as_str(), allow)
            .map_err(bad_endpoint)?;

        // Basic is the default when the provider does not say (OIDC Discovery §3).
        let client_auth = match metadata.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthMethod::Post
            }
            _ => AuthMethod::Basic,
        };

        let mut scopes: Vec<String> = settings
            .scopes
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if scopes.is_empty() {
            scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }

        // Discovery fetched the key set already; reuse it rather than fetch again.
        let keys = serde_json::to_value(metadata.jwks())
            .map(|v| parse_key_set(&v))
            .unwrap_or_default();

        tracing::info!(
            issuer,
            token_endpoint = %token_endpoint,
            keys = keys.len(),
            "discovered OpenID Connect provider"
        );
        let inner = Inner {
            issuer: metadata.issuer().as_str().to_string(),
            google,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            jwks_uri,
            client_auth,
            scope: scopes.join(" "),
            keys: RwLock::new(keys),
            http,
            settings,
        };
        Ok(Oidc {
            inner: Arc::new(inner),
        })
    }

    /// The issuer the ID tokens must name.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub(super) fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Url {
        self.inner
            .authorize_url(redirect_uri, state, nonce, challenge)
    }

    pub(super) async fn finish(
        &self,
        kind: &str,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, IdpError> {
        self.inner
            .finish(kind, redirect_uri, code, nonce, pkce_verifier)
            .await
    }
}

impl Inner {
    fn authorize_url(&self, redirect_uri: &str, state: &str, nonce: &str, challenge: &str) -> Url {
        let mut url = self.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hd) = self.hosted_domain() {
                q.append_pair("hd", hd);
            }
        }
        url
    }

    fn hosted_domain(&self) -> Option<&str> {
        if !self.google {
            return None;
        }
        self.settings
            .google_hosted_domain
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
    }

    async fn finish(
        &self,
        kind: &str,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, IdpError> {
        let tokens = exchange_code(
            &self.http,
            &self.token_endpoint,
            credentials(
                &self.settings.client_id,
                &self.settings.client_secret,
                self.client_auth,
            ),
            code,
            redirect_uri,
            pkce_verifier,
        )
        .await?;
        let Some(id_token) = tokens.id_token.as_ref().map(|t| t.expose()) else {
            return Err(IdpError::InvalidIdToken(IdTokenProblem::Missing));
        };
        let claims = self.verify_id_token(id_token, nonce).await?;
        let Some(subject) = string_claim(&claims, "sub") else {
            return Err(IdpError::InvalidIdToken(IdTokenProblem::MissingClaim(
                "sub".into(),
            )));
        };

        // The address and its verification are taken as a pair from one
        // source, so that a verified flag can never vouch for another address.
        let mut email = string_claim(&claims, "email");
        let mut verified = email
            .as_ref()
            .and_then(|_| verified_claim(&claims, self.google));
        let mut name = display_name(&claims);
        let groups_claim = self.settings.groups_claim.as_deref();
        let mut groups = groups_claim.and_then(|c| groups_in(&claims, c));

        let incomplete = verified.is_none() || (groups_claim.is_some() && groups.is_none());
        if let (true, Some(endpoint)) = (incomplete, &self.userinfo_endpoint) {
            let info = self
                .userinfo(endpoint, tokens.access_token.expose(), &subject)
                .await?;
            if verified.is_none()
                && let Some(address) = string_claim(&info, "email")
            {
                verified = verified_claim(&info, self.google);
                email = Some(address);
            }
            if name.is_none() {
                name = display_name(&info);
            }
            if groups.is_none() {
                groups = groups_claim.and_then(|c| groups_in(&info, c));
            }
        }

        let email = email
            .map(|e| e.trim().to_lowercase())
            .filter(|e| e.contains('@'))
            .ok_or(IdpError::NoEmail)?;
        if verified != Some(true) {
            return Err(IdpError::EmailNotVerified { email });
        }

        let domain = if self.google {
            string_claim(&claims, "hd").map(|d| d.trim().to_lowercase())
        } else {
            None
        };
        Ok(Identity {
            provider: kind.to_string(),
            subject,
            email,
            name,
            domain,
            groups: groups.unwrap_or_default(),
            orgs: Vec::new(),
        })
    }

    /// Verify signature, algorithm, issuer, audience, expiry, `iat`, `azp` and
    /// nonce (OIDC Core §3.1.3.7), and return the claims.
    async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let invalid = IdpError::InvalidIdToken;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid(IdTokenProblem::Malformed))?;
        if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
            return Err(invalid(IdTokenProblem::Algorithm(format!(
                "{:?}",
                header.alg
            ))));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        validation.set_issuer(&self.accepted_issuers());
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        let mut refreshed = false;
        let claims = loop {
            let keys = self.candidate_keys(&header);
            if keys.is_empty() {
                // A key we have not seen: the provider may have rotated since
                // we last fetched its key set. Fetch once, then give up.
                if refreshed {
                    return Err(invalid(IdTokenProblem::UnknownKey));
                }
                self.refresh_keys().await?;
                refreshed = true;
                continue;
            }
            let mut outcome = Err(IdTokenProblem::Signature);
            for key in &keys {
                match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                    Ok(data) => {
                        outcome = Ok(data.claims);
                        break;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                    Err(e) => {
                        outcome = Err(token_problem(e.kind()));
                        break;
                    }
                }
            }
            break outcome.map_err(invalid)?;
        };

        let nonce_ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !nonce_ok {
            return Err(invalid(IdTokenProblem::Nonce));
        }

        let several_audiences = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if *azp == self.settings.client_id => {}
            None if !several_audiences => {}
            _ => return Err(invalid(IdTokenProblem::AuthorizedParty)),
        }

        let Some(iat) = claims.get("iat").and_then(Value::as_f64) else {
            return Err(invalid(IdTokenProblem::MissingClaim("iat".into())));
        };
        if iat > (jsonwebtoken::get_current_timestamp() + LEEWAY) as f64 {
            return Err(invalid(IdTokenProblem::IssuedInFuture));
        }
        Ok(claims)
    }

    fn accepted_issuers(&self) -> Vec<String> {
        let mut issuers = vec![self.issuer.clone()];
        // Google documents both forms of its issuer in ID tokens.
        if self.google && self.issuer == super::GOOGLE_ISSUER {
            issuers.push("accounts.google.com".into());
        }
        issuers
    }

    /// The published keys that could have signed a token with this header.
    fn candidate_keys(&self, header: &Header) -> Vec<DecodingKey> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.iter()
            .filter(|jwk| match &header.kid {
                Some(kid) => jwk.common.key_id.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .filter(|jwk| {
                jwk.common.key_algorithm.as_ref().is_none_or(|ka| {
                    Algorithm::from_str(&ka.to_string()).is_ok_and(|a| a == header.alg)
                })
            })
            .filter(|jwk| {
                matches!(
                    jwk.algorithm,
                    AlgorithmParameters::RSA(_)
                        | AlgorithmParameters::EllipticCurve(_)
                        | AlgorithmParameters::OctetKeyPair(_)
                )
            })
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .filter(|key| key.family() == header.alg.family())
            .collect()
    }

    async fn refresh_keys(&self) -> Result<(), IdpError> {
        let url = &self.jwks_uri;
        let answer = self.http.get_json(url, None, "application/json").await?;
        let invalid = |reason: String| IdpError::InvalidResponse {
            url: shown(url),
            reason,
        };
        if !answer.status.is_success() {
            return Err(invalid(format!(
                "the key set answered HTTP {}",
                answer.status
            )));
        }
        let value: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| invalid(format!("the key set is not JSON: {e}")))?;
        let keys = parse_key_set(&value);
        tracing::info!(jwks_uri = %url, keys = keys.len(), "refreshed the identity provider's keys");
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        Ok(())
    }

    async fn userinfo(
        &self,
        url: &Url,
        access_token: &str,
        subject: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let answer = self
            .http
            .get_json(url, Some(access_token), "application/json")
            .await?;
        let invalid = |reason: String| IdpError::InvalidResponse {
            url: shown(url),
            reason,
        };
        if !answer.status.is_success() {
            return Err(invalid(format!("userinfo answered HTTP {}", answer.status)));
        }
        if !answer.is_json() {
            return Err(invalid(
                "userinfo did not answer JSON (signed userinfo answers are not supported)".into(),
            ));
        }
        let info: Map<String, Value> = serde_json::from_slice(&answer.body)
            .map_err(|e| invalid(format!("userinfo is not a JSON object: {e}")))?;
        // OIDC Core §5.3.2: otherwise the answer may be about someone else.
        if string_claim(&info, "sub").as_deref() != Some(subject) {
            return Err(invalid(
                "userinfo is about another account than the ID token (sub differs)".into(),
            ));
        }
        Ok(info)
    }
}

/// Keys one by one, skipping those we cannot read, so that one exotic key
/// (an encryption key, a new curve) does not hide the others.
fn parse_key_set(value: &Value) -> Vec<Jwk> {
    value
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn discovery_reason(e: DiscoveryError<UpstreamHttpError>) -> String {
    const HINT: &str = "is this the issuer URL of an OpenID Connect provider?";
    match e {
        DiscoveryError::Request(e) => e.to_string(),
        DiscoveryError::Response(status, _, message) => {
            if !status.is_success() && message.contains(DISCOVERY_SUFFIX) {
                format!("it answered HTTP {status} instead of a discovery document: {HINT}")
            } else if !status.is_success() {
                format!("fetching the provider's keys (jwks_uri) answered HTTP {status}")
            } else {
                format!("{message}: {HINT}")
            }
        }
        DiscoveryError::Parse(e) => {
            format!("the answer is not OpenID Connect provider metadata ({e}): {HINT}")
        }
        DiscoveryError::Validation(message) => format!(
            "{message}; the configured issuer must match the provider's exactly, \
             including any trailing slash"
        ),
        DiscoveryError::UrlParse(e) => format!("not a URL: {e}"),
        DiscoveryError::Other(message) => message,
        other => other.to_string(),
    }
}

fn token_problem(kind: &ErrorKind) -> IdTokenProblem {
    match kind {
        ErrorKind::ExpiredSignature => IdTokenProblem::Expired,
        ErrorKind::ImmatureSignature => IdTokenProblem::IssuedInFuture,
        ErrorKind::InvalidIssuer => IdTokenProblem::Issuer,
        ErrorKind::InvalidAudience => IdTokenProblem::Audience,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            IdTokenProblem::MissingClaim(c.clone())
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            IdTokenProblem::Algorithm("an algorithm that does not match the key".into())
        }
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => IdTokenProblem::Signature,
        _ => IdTokenProblem::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_set_skips_unreadable_keys() {
        let v = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "a"},
            42,
            {"kty": "EC", "kid": 5},
        ]});
        let keys = parse_key_set(&v);
        assert_eq!(keys.len(), 1);
    }
}
