//! Opaque secrets the authorization server hands out (refresh tokens,
//! authorization codes, login state, CSRF values), typed so that none can ever be
//! accepted as another.
//!
//! Three locks, any one of which is enough: the Rust type (`Token<Refresh>` is not
//! a `Token<AuthorizationCode>`), the text (each kind has its own prefix, checked
//! on parse), and the stored hash (the prefix is part of what is hashed). A peer
//! accepted refresh tokens as access tokens because both were signed the same way
//! with no type; here that cannot compile, let alone run.
//!
//! Tokens are 256 random bits, shown once to their holder and stored only as a
//! SHA-256 hash, compared in constant time.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token is for, as stored next to its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Refresh,
    AuthorizationCode,
    LoginState,
    Csrf,
    Browser,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Refresh => "mgr_",
            TokenKind::AuthorizationCode => "mgc_",
            TokenKind::LoginState => "mgs_",
            TokenKind::Csrf => "mgx_",
            TokenKind::Browser => "mgb_",
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The kinds, as types.
pub trait Kind: sealed::Sealed {
    const KIND: TokenKind;
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident => $kind:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl Kind for $name {
            const KIND: TokenKind = TokenKind::$kind;
        }
    )*};
}

kinds! {
    /// A refresh token (rotated on every use).
    Refresh => Refresh,
    /// An authorization code (single use, short-lived).
    AuthorizationCode => AuthorizationCode,
    /// The state of a login in progress at the identity provider.
    LoginState => LoginState,
    /// A form's anti-forgery value.
    Csrf => Csrf,
    /// A browser's sign-in cookie at the gateway.
    Browser => Browser,
}

const SECRET_BYTES: usize = 32;
/// base64url of 32 bytes, without padding.
const SECRET_CHARS: usize = 43;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this is a {found:?} token, not a {expected:?} token")]
    WrongKind {
        expected: TokenKind,
        found: TokenKind,
    },
    #[error("not a token issued by this server")]
    Malformed,
}

/// A secret of kind `K`. Its text is shown once; `Debug` never prints it.
pub struct Token<K: Kind> {
    text: String,
    kind: PhantomData<K>,
}

impl<K: Kind> Token<K> {
    pub fn generate() -> Token<K> {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Token {
            text: format!("{}{secret}", K::KIND.prefix()),
            kind: PhantomData,
        }
    }

    /// Read a token a client presented, refusing any other kind.
    pub fn parse(text: &str) -> Result<Token<K>, TokenError> {
        let expected = K::KIND;
        let Some(secret) = text.strip_prefix(expected.prefix()) else {
            let found = [
                TokenKind::Refresh,
                TokenKind::AuthorizationCode,
                TokenKind::LoginState,
                TokenKind::Csrf,
                TokenKind::Browser,
            ]
            .into_iter()
            .find(|k| text.starts_with(k.prefix()));
            return Err(match found {
                Some(found) => TokenError::WrongKind { expected, found },
                None => TokenError::Malformed,
            });
        };
        let well_formed = secret.len() == SECRET_CHARS
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(TokenError::Malformed);
        }
        Ok(Token {
            text: text.to_string(),
            kind: PhantomData,
        })
    }

    /// The text to hand to the client, once.
    pub fn reveal(&self) -> &str {
        &self.text
    }

    /// What is stored: the hash, never the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.text.as_bytes()).into())
    }
}

impl<K: Kind> fmt::Debug for Token<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token<{:?}>(redacted)", K::KIND)
    }
}

/// The SHA-256 of a token, as stored. Compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<TokenHash> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TokenHash(out))
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_parses_as_its_own_kind_only() {
        let refresh = Token::<Refresh>::generate();
        let text = refresh.reveal().to_string();
        assert!(text.starts_with("mgr_"));
        let again = Token::<Refresh>::parse(&text).expect("own kind");
        assert_eq!(again.hash(), refresh.hash());
        assert_eq!(
            Token::<AuthorizationCode>::parse(&text).expect_err("other kind"),
            TokenError::WrongKind {
                expected: TokenKind::AuthorizationCode,
                found: TokenKind::Refresh
            }
        );
        assert!(Token::<Csrf>::parse(&text).is_err());
        assert!(Token::<LoginState>::parse(&text).is_err());
    }

    #[test]
    fn malformed_and_foreign_tokens_are_refused() {
        for bad in [
            "",
            "mgr_",
            "mgr_short",
            "mgr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
            "Bearer mgr_x",
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert!(Token::<Refresh>::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_unique_and_hashes_round_trip() {
        let a = Token::<Csrf>::generate();
        let b = Token::<Csrf>::generate();
        assert_ne!(a.reveal(), b.reveal());
        assert_ne!(a.hash(), b.hash());
        let hex = a.hash().to_hex();
        assert_eq!(TokenHash::from_hex(&hex), Some(a.hash()));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let t = Token::<Refresh>::generate();
        let shown = format!("{t:?} {:?}", t.hash());
        assert!(!shown.contains(&t.reveal()[4..]), "{shown}");
    }
}
