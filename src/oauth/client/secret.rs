//! Secrets: [`Secret`], a value whose `Debug` prints nothing of it and which has
//! no `Display`, and [`random_secret`], the one source of random PKCE
//! verifiers, nonces and `state` values. Every other file of the client keeps
//! client secrets, codes, verifiers and tokens in a `Secret`, so that no log
//! line or error can show one by accident.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// What `Debug` shows in place of a secret.
pub(super) const REDACTED: &str = "<redacted>";

/// A value that must never be printed: `Debug` shows `<redacted>`, and there is
/// deliberately no `Display`, so `format!("{secret}")` does not compile.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// 256 random bits, base64url (43 characters): PKCE verifiers (within RFC
/// 7636's 43..=128), nonces, `state` values.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
