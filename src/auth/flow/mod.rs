//! The browser side of an authorization: `/authorize` -> sign-in -> consent ->
//! 302 back to the client with a code.
//!
//! The request is validated in two stages (RFC 6749 §4.1.2.1): until the client
//! and its redirect URI are known good, errors are shown as a page (redirecting
//! to an unchecked URI would make the gateway an open redirector); after that,
//! errors go back to the client on its redirect URI.
//!
//! A request in progress is a [`PendingAuthorization`] in the store, named by a
//! `Token<LoginState>` carried in URLs and bound to the browser that started it
//! (its cookie's hash), so a request link sent to someone else is useless. Every
//! form carries a CSRF value whose hash the request holds; both must match.
//!
//! One file per step, each importing only the steps after it and the shared
//! pieces below them (no two files import each other):
//!
//! | file | owns |
//! |---|---|
//! | `authorize` | `/authorize` and `/my/login`: the start of a request |
//! | `password` | the local sign-in form (`/login`) |
//! | `callback` | the identity provider's answer (`/oauth/callback`) |
//! | `sign_in` | sign-in begun (form or provider) and finished (policy, session cookie) |
//! | `consent` | the consent page and its answer (`/consent`) |
//! | `code` | the end: skip consent when already given, issue the code |
//! | `pending` | the request in progress in the store, and its CSRF value |
//! | `browser` | the binding and session cookies, `/logout` |
//! | `respond` | 302s and OAuth errors sent back to the client |
//! | `request` | the `/authorize` parameters checked without I/O |
//! | `access` | who may sign in (`proxy.auth.allowed*`) |
//!
//! [`PendingAuthorization`]: super::records::PendingAuthorization

// Handlers return early with a ready page as their error: boxing it would only
// add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod access;
mod authorize;
mod browser;
mod callback;
mod code;
mod consent;
mod password;
mod pending;
mod request;
mod respond;
mod sign_in;

pub use access::{AccessDenied, allowed};
pub use authorize::{NextQuery, authorize, my_sign_in};
pub use browser::logout;
pub(super) use browser::signed_in;
pub use callback::{CallbackQuery, callback};
pub use code::CODE_TTL;
pub use consent::{ConsentForm, consent_page, consent_submit};
pub use password::{LoginForm, login_page, login_submit};
pub use pending::RequestQuery;
pub use request::{AuthorizeQuery, is_pkce_value};
pub(super) use respond::found;
