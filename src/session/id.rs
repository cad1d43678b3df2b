use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use rand::RngCore;

/// An `Mcp-Session-Id`: 256 random bits, URL-safe base64. Unguessable, so it can
/// be handed to a client; later issues bind it to the user as well.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Arc<str>);

impl SessionId {
    pub fn generate() -> SessionId {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SessionId(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Session ids are bearer secrets: never print them whole.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..6.min(self.0.len())])
    }
}
