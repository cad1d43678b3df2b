//! PKCE (RFC 7636): the verifier and its S256 challenge. Its own file because
//! all three OAuth clients of mcpgate (`auth::idp`, `auth::upstream`,
//! `connect`) build their authorization URLs with it, and the verifier must
//! stay a [`Secret`] until the code is redeemed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::secret::{Secret, random_secret};

/// A PKCE pair: the verifier stays with us until the code is redeemed, the
/// challenge goes into the authorization URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    /// The only method used: `plain` would put the verifier itself in the URL.
    pub const METHOD: &'static str = "S256";

    pub fn generate() -> Pkce {
        let verifier = random_secret();
        let challenge = Pkce::challenge_of(&verifier);
        Pkce {
            verifier: Secret::new(verifier),
            challenge,
        }
    }

    /// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
    pub fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_base64url_sha256_of_verifier() {
        // RFC 7636 appendix B.
        assert_eq!(
            Pkce::challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, Pkce::challenge_of(p.verifier.expose()));
        assert_ne!(p.verifier, Pkce::generate().verifier);
        assert!(!format!("{p:?}").contains(p.verifier.expose()));
    }
}
