//! The authorization server and resource server (issue 3), built up piece by
//! piece. What is here is complete and tested on its own but not yet wired into
//! the router:
//!
//! - [`error`]: the OAuth error codes, one enum with their wire names, and how
//!   each is answered over HTTP.
//! - [`redirect`]: which redirect URIs a client may register, how a requested one
//!   is matched against them (RFC 8252 loopback ports), and the one function that
//!   builds every redirect back to a client.
//! - [`password`]: argon2id hashes for the `local` provider's users
//!   (`mcpgate hash-password`).
//! - [`token`]: refresh tokens, authorization codes, login state and CSRF values,
//!   typed so that none can be accepted as another, stored only as hashes.

pub mod error;
pub mod password;
pub mod redirect;
pub mod token;
