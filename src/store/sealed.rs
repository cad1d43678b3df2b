//! Encryption at rest for per-user secrets (personal tokens, upstream OAuth
//! tokens): AES-256-GCM with a random nonce per value (aws-lc-rs's
//! `RandomizedNonceKey`, so a nonce can never be reused by mistake).
//!
//! Each sealed value names the key that sealed it (`kid`, the first bytes of the
//! key's SHA-256), so keys can rotate: the first configured key seals, every
//! configured key opens, and `mcpgate rotate-keys` re-seals old values. The
//! record's own store key is the associated data, so a sealed value copied to
//! another person's or service's record does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A value as stored: which key, the nonce and the ciphertext with its tag.
#[derive(Clone, Serialize, Deserialize)]
pub struct Sealed {
    pub kid: String,
    pub nonce: String,
    pub data: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(kid={})", self.kid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "no configured encryption key has id {0}; add the key that sealed it to proxy.auth.previousEncryptionKeys"
    )]
    UnknownKey(String),
    #[error("a stored secret does not decrypt (wrong key, or the record was altered)")]
    Corrupt,
    #[error("encryption failed")]
    Seal,
}

pub struct Sealer {
    keys: Vec<(String, RandomizedNonceKey)>,
}

impl Sealer {
    /// Keys as configured, the current one first. `None` without any key.
    pub fn new(keys: &[[u8; 32]]) -> Option<Sealer> {
        let keys: Vec<(String, RandomizedNonceKey)> = keys
            .iter()
            .filter_map(|k| {
                let kid: String = Sha256::digest(k)[..6]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                RandomizedNonceKey::new(&AES_256_GCM, k)
                    .ok()
                    .map(|key| (kid, key))
            })
            .collect();
        (!keys.is_empty()).then_some(Sealer { keys })
    }

    pub fn current_kid(&self) -> &str {
        &self.keys[0].0
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Sealed, SealError> {
        let (kid, key) = &self.keys[0];
        let mut buf = plaintext.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| SealError::Seal)?;
        Ok(Sealed {
            kid: kid.clone(),
            nonce: STANDARD.encode(nonce.as_ref()),
            data: STANDARD.encode(&buf),
        })
    }

    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>, SealError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(kid, _)| *kid == sealed.kid)
            .ok_or_else(|| SealError::UnknownKey(sealed.kid.clone()))?;
        let nonce_bytes = STANDARD
            .decode(&sealed.nonce)
            .map_err(|_| SealError::Corrupt)?;
        let nonce =
            Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| SealError::Corrupt)?;
        let mut buf = STANDARD
            .decode(&sealed.data)
            .map_err(|_| SealError::Corrupt)?;
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate_and_refuse_tampering() {
        let old = Sealer::new(&[[1u8; 32]]).unwrap();
        let s = old.seal(b"secret_abc", "alice\nnotion").unwrap();
        assert!(!s.data.contains("secret"));
        assert_eq!(old.open(&s, "alice\nnotion").unwrap(), b"secret_abc");
        // Another record's associated data: refused.
        assert!(matches!(
            old.open(&s, "bob\nnotion"),
            Err(SealError::Corrupt)
        ));
        // Rotation: new key first, old key still opens; new seals use the new key.
        let rotated = Sealer::new(&[[2u8; 32], [1u8; 32]]).unwrap();
        assert_eq!(rotated.open(&s, "alice\nnotion").unwrap(), b"secret_abc");
        let s2 = rotated.seal(b"secret_abc", "alice\nnotion").unwrap();
        assert_ne!(s2.kid, s.kid);
        // Without the old key: a clear error.
        let only_new = Sealer::new(&[[2u8; 32]]).unwrap();
        assert!(matches!(
            only_new.open(&s, "alice\nnotion"),
            Err(SealError::UnknownKey(_))
        ));
        // Tampered ciphertext.
        let mut t = s2.clone();
        let mut raw = STANDARD.decode(&t.data).unwrap();
        raw[0] ^= 1;
        t.data = STANDARD.encode(raw);
        assert!(matches!(
            rotated.open(&t, "alice\nnotion"),
            Err(SealError::Corrupt)
        ));
    }
}
