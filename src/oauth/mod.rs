//! The OAuth vocabulary both sides of mcpgate share: the RFC error codes with
//! their wire names ([`error`]), the redirect URI rules with the one function
//! that builds a redirect back to a client ([`redirect`]), and the outbound
//! client (PKCE, token requests, the https rule, redaction: [`client`]) used
//! wherever mcpgate is itself an OAuth client.
//!
//! It sits below `config` (which validates configured redirect URIs with these
//! rules), `auth` (the authorization server) and `connect` (the client), and
//! imports nothing of theirs.

pub mod client;
pub mod error;
pub mod redirect;
