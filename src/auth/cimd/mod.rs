//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
//! the registration method the MCP authorization spec 2025-11-25 prefers): a
//! client whose `client_id` is an `https` URL has no registration with us; the
//! URL names a JSON document holding its metadata, which we fetch and check.
//!
//! Fetching a URL that anyone on the internet chose is server-side request
//! forgery by design, so every rule here is about keeping that fetch harmless:
//!
//! - **Only `https`, a real path, no fragment, no credentials, no `.`/`..`
//!   segments, at most 2048 characters** (the draft's URL rules). The path rule
//!   keeps one origin from claiming to be every client it hosts; dot segments are
//!   refused because URL parsers remove them, so `https://host/~alice/../~bob/c`
//!   would be fetched from Bob's path while naming Alice's. Plain `http` is
//!   allowed only with `allow_private_networks`, for local development.
//! - **No internal addresses.** Otherwise a client ID such as
//!   `https://169.254.169.254/latest/...` or `https://10.0.0.5/admin` turns the
//!   gateway into a proxy into its own network (cloud metadata, admin ports).
//!   The check is on the addresses actually connected to: the HTTP client
//!   resolves names through `GuardedResolver`, which refuses a name if any of
//!   its addresses is non-public, so a DNS answer that changes between a check
//!   and the connection (rebinding) cannot slip through. IP literals never reach
//!   a resolver, so they are checked before the request is sent. IPv4-mapped and
//!   NAT64 IPv6 forms are judged by the IPv4 address they reach. No proxy is
//!   used: a proxy would connect on our behalf to whatever it resolves.
//! - **No redirects.** The draft forbids following them (a redirect would let an
//!   open redirector on one site serve a document for a client ID on that site,
//!   and every hop would need the same address checks). A 3xx is an error that
//!   tells the client developer to serve the document at the URL itself.
//! - **A time limit on the whole exchange, body included, and a size limit
//!   counted while streaming.** A slow or endless response would otherwise tie
//!   up the authorization endpoint, and `Content-Length` can lie or be absent.
//!   The client is built without decompression, so the limit is on real bytes.
//! - **The document must name itself** (`client_id` equal to the URL, compared
//!   as strings, as the draft requires), otherwise any site could serve a copy of
//!   another client's document with its own redirect URIs.
//! - **No client secrets.** The document is public, so a secret in it is no
//!   secret: `client_secret*` fields and `client_secret_*` authentication
//!   methods are refused, and only public clients (`none`) are accepted for now.
//! - **Redirect URIs follow our registration rules** ([`RedirectUri::register`]),
//!   exactly as for dynamically registered clients.
//! - **Display fields are cleaned** because the consent page shows them: the name
//!   is trimmed, stripped of control and bidi-override characters (which can make
//!   a name read as another), and capped; `client_uri` and `logo_uri` are kept
//!   only when they are plain `https` URLs.
//!
//! Successful fetches are cached (default 10 minutes, shorter if the response's
//! `Cache-Control` says so, never over 24 hours); failures are cached for 30
//! seconds so that repeating a bad client ID cannot make the gateway hammer a
//! third party's server. Errors and logs never contain the document body.

//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the fetcher: policy, the order of the checks, what is cached |
//! | `address` | the URL rules and the public-address rule, before sending |
//! | `fetch` | the guarded HTTP client and the bounded download |
//! | `document` | what the document must say, and its cleaned display fields |
//! | `cache` | the bounded cache of results |

mod address;
mod cache;
mod document;
mod fetch;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::RedirectUri;

pub use address::UrlRefused;
pub use document::DocumentRefused;
pub use fetch::FetchFailed;

/// The draft's URL length is not bounded; this keeps cache keys and error
/// messages small.
const MAX_URL_LEN: usize = 2048;
/// No cache lifetime, configured or sent by the server, is longer than this.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Failures are remembered briefly: long enough to blunt a flood of requests
/// naming the same bad document, short enough for a developer fixing one.
const FAILURE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct CimdPolicy {
    /// Allow loopback and private addresses and plain `http`: local development
    /// and tests only, never on a gateway reachable from the internet.
    pub allow_private_networks: bool,
    /// For the whole exchange: connection, headers and body.
    pub timeout: Duration,
    pub max_bytes: usize,
    /// How long a fetched document is trusted; a shorter `Cache-Control:
    /// max-age` wins, and nothing is kept longer than 24 hours.
    pub cache_ttl: Duration,
}

impl Default for CimdPolicy {
    fn default() -> CimdPolicy {
        CimdPolicy {
            allow_private_networks: false,
            timeout: Duration::from_secs(5),
            // The draft suggests 5 KiB; real documents with long names and many
            // redirect URIs come close, so allow some room.
            max_bytes: 16 * 1024,
            cache_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// A client's metadata, from a document that passed every check.
#[derive(Debug, Clone)]
pub struct ClientMetadata {
    /// The URL, exactly as the client sent it and as the document states it.
    pub client_id: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Never empty.
    pub redirect_uris: Vec<RedirectUri>,
    /// Always `"none"` for now.
    pub token_endpoint_auth_method: String,
}

/// Why a client ID's document was refused: its URL, its fetch, or its content.
/// Clients see it as `invalid_client`, `client metadata document <url>: <why>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    #[error(transparent)]
    Url(#[from] UrlRefused),
    #[error(transparent)]
    Fetch(#[from] FetchFailed),
    #[error(transparent)]
    Document(#[from] DocumentRefused),
}

pub struct CimdFetcher {
    policy: CimdPolicy,
    http: reqwest::Client,
    cache: cache::Cache,
}

impl CimdFetcher {
    pub fn new(policy: CimdPolicy) -> CimdFetcher {
        CimdFetcher {
            http: fetch::http_client(&policy),
            policy,
            cache: cache::Cache::default(),
        }
    }

    /// Whether `client_id` should be fetched as a metadata document rather than
    /// looked up among registered clients. Only the scheme is looked at: a
    /// malformed URL is then refused by [`CimdFetcher::fetch`] with a reason,
    /// instead of being reported as an unknown client.
    pub fn is_metadata_url(&self, client_id: &str) -> bool {
        let starts = |prefix: &str| {
            client_id
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        starts("https://") || (self.policy.allow_private_networks && starts("http://"))
    }

    /// Fetch, check and cache the document that `client_id` names.
    pub async fn fetch(&self, client_id: &str) -> Result<ClientMetadata, OAuthError> {
        if let Some(cached) = self.cache.get(client_id) {
            return cached;
        }
        let allow_private = self.policy.allow_private_networks;
        // Refusals of the URL itself cost nothing and are not cached: caching
        // them would only let a caller fill the cache.
        let url =
            address::check_url(client_id, allow_private).map_err(|why| refuse(client_id, why))?;
        if !allow_private {
            address::check_host(&url).map_err(|why| refuse(client_id, why))?;
        }

        let download = fetch::download(&self.http, url, self.policy.max_bytes);
        let fetched: Result<_, CimdError> =
            match tokio::time::timeout(self.policy.timeout, download).await {
                Ok(r) => r.map_err(CimdError::from),
                Err(_) => Err(FetchFailed::TooSlow(self.policy.timeout).into()),
            };
        let (result, ttl) = match fetched
            .and_then(|(body, max_age)| Ok((document::parse_document(client_id, &body)?, max_age)))
        {
            Ok((meta, max_age)) => {
                let mut ttl = self.policy.cache_ttl.min(MAX_CACHE_TTL);
                if let Some(max_age) = max_age {
                    ttl = ttl.min(max_age);
                }
                tracing::debug!(
                    client_id,
                    ttl_s = ttl.as_secs(),
                    "client metadata document accepted"
                );
                (Ok(meta), ttl)
            }
            Err(why) => {
                tracing::debug!(client_id, reason = %why, "client metadata document refused");
                (
                    Err(refuse(client_id, why)),
                    FAILURE_TTL.min(self.policy.cache_ttl),
                )
            }
        };
        self.cache.remember(client_id, &result, ttl);
        result
    }
}

fn refuse(client_id: &str, why: impl Into<CimdError>) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        format!(
            "client metadata document {}: {}",
            short(client_id, 120),
            why.into()
        ),
    )
}

/// Client-supplied text in messages is quoted and cut short: it is not secret,
/// but the message should stay readable and must not carry a document.
fn short(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}
