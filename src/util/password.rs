//! Passwords of the `local` identity provider's users: argon2id hashes in PHC
//! form (`$argon2id$v=19$...`), made by `mcpgate hash-password` and put in the
//! config; the plain password is never stored.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashing failed (the random salt or the hasher itself: not the password's
/// fault).
#[derive(Debug, thiserror::Error)]
#[error("hashing failed: {0}")]
pub struct HashError(String);

/// Hash a password with argon2id, the default parameters and a random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `stored` is a well-formed argon2 PHC string (checked at config load).
pub fn is_valid_hash(stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

/// Check a password against its stored hash (the comparison inside is constant
/// time). A malformed hash never verifies.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse").expect("hash");
        let b = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(is_valid_hash(&a));
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horsf", &a));
        assert!(!verify("correct horse", "not-a-hash"));
        assert!(
            !is_valid_hash("$2b$10$abcdefghijklmnopqrstuv"),
            "bcrypt is not accepted"
        );
    }
}
