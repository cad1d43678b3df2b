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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header;
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::RedirectUri;

/// The draft's URL length is not bounded; this keeps cache keys and error
/// messages small.
const MAX_URL_LEN: usize = 2048;
/// No cache lifetime, configured or sent by the server, is longer than this.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Failures are remembered briefly: long enough to blunt a flood of requests
/// naming the same bad document, short enough for a developer fixing one.
const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Bounds memory: client IDs are chosen by whoever calls `/authorize`.
const MAX_CACHE_ENTRIES: usize = 1000;
/// Shown on the consent page; longer names only serve to push the real
/// information off the screen.
const MAX_CLIENT_NAME_CHARS: usize = 100;
/// More than any real client needs; each one is parsed and matched later.
const MAX_REDIRECT_URIS: usize = 32;

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

struct CacheEntry {
    inserted: Instant,
    expires: Instant,
    result: Result<ClientMetadata, OAuthError>,
}

pub struct CimdFetcher {
    policy: CimdPolicy,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, CacheEntry>>,
}

impl CimdFetcher {
    pub fn new(policy: CimdPolicy) -> CimdFetcher {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .referer(false)
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")));
        if !policy.allow_private_networks {
            builder = builder.https_only(true).dns_resolver(GuardedResolver);
        }
        // Building fails only when the TLS backend cannot be initialised, the
        // same condition under which `reqwest::Client::new()` panics; nothing
        // here depends on input.
        let http = builder
            .build()
            .expect("the HTTP client for client metadata documents can be built");
        CimdFetcher {
            policy,
            http,
            cache: Mutex::new(HashMap::new()),
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
        if let Some(cached) = self.cached(client_id) {
            return cached;
        }
        let allow_private = self.policy.allow_private_networks;
        // Refusals of the URL itself cost nothing and are not cached: caching
        // them would only let a caller fill the cache.
        let url = check_url(client_id, allow_private).map_err(|why| refuse(client_id, &why))?;
        if !allow_private {
            check_host(&url).map_err(|why| refuse(client_id, &why))?;
        }

        let fetched = match tokio::time::timeout(self.policy.timeout, self.download(url)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "was not fetched within {} ms",
                self.policy.timeout.as_millis()
            )),
        };
        let (result, ttl) = match fetched
            .and_then(|(body, max_age)| Ok((parse_document(client_id, &body)?, max_age)))
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
                    Err(refuse(client_id, &why)),
                    FAILURE_TTL.min(self.policy.cache_ttl),
                )
            }
        };
        self.remember(client_id, &result, ttl);
        result
    }

    fn cached(&self, client_id: &str) -> Option<Result<ClientMetadata, OAuthError>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(client_id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.result.clone())
    }

    fn remember(
        &self,
        client_id: &str,
        result: &Result<ClientMetadata, OAuthError>,
        ttl: Duration,
    ) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES && !cache.contains_key(client_id) {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_CACHE_ENTRIES {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            client_id.to_owned(),
            CacheEntry {
                inserted: now,
                expires: now + ttl,
                result: result.clone(),
            },
        );
    }

    /// The network half of a fetch: the body (at most `max_bytes`) and the
    /// `max-age` the server allows. Errors are descriptions for the client.
    async fn download(&self, url: Url) -> Result<(Vec<u8>, Option<Duration>), String> {
        let mut resp = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe_http_error(&e))?;

        let status = resp.status();
        if status.is_redirection() {
            return Err(format!(
                "answered with a redirect (HTTP {}), which is not followed: serve the document \
                 at the client_id URL itself",
                status.as_u16()
            ));
        }
        if status != reqwest::StatusCode::OK {
            return Err(format!("answered HTTP {}, not 200", status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json_media_type(content_type) {
            return Err(format!(
                "has content type {}, not application/json",
                short(content_type, 60)
            ));
        }
        let max_age = cache_max_age(resp.headers());

        let max = self.policy.max_bytes;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("is larger than {max} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe_http_error(&e))? {
            if body.len() + chunk.len() > max {
                return Err(format!("is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

fn refuse(client_id: &str, why: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        format!("client metadata document {}: {why}", short(client_id, 120)),
    )
}

/// The draft's rules for the URL, before anything is sent.
fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} characters"));
    }
    // Parsers disagree on spaces, backslashes and non-ASCII; a client ID that is
    // compared as a string must not mean different things to different parsers.
    if !text.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err("the URL must be plain ASCII without spaces or backslashes".into());
    }
    let url = Url::parse(text).map_err(|e| format!("the URL is not valid ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("the URL must use https".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not contain a username or password".into());
    }
    if url.fragment().is_some() || text.contains('#') {
        return Err("the URL must not contain a fragment".into());
    }
    if url.host().is_none() {
        return Err("the URL needs a host".into());
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err(
            "the URL must have a path, e.g. https://app.example.com/oauth/client.json".into(),
        );
    }
    if has_dot_segment(text) {
        return Err("the URL must not contain \".\" or \"..\" path segments".into());
    }
    Ok(url)
}

/// Dot segments are looked for in the text as sent, since parsing removes them
/// (including their percent-encoded forms).
fn has_dot_segment(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let Some(start) = rest.find(['/', '?', '#']) else {
        return false;
    };
    let path = &rest[start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Refuse hosts that are internal without asking DNS: IP literals (which the
/// resolver never sees) and `localhost` names (for a clear message; the
/// resolver would refuse them too).
fn check_host(url: &Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(NON_PUBLIC.into());
            }
            return Ok(());
        }
        None => return Err("the URL needs a host".into()),
    };
    if is_public_ip(ip) {
        Ok(())
    } else {
        tracing::info!(%ip, "client metadata URL names a non-public address");
        Err(NON_PUBLIC.into())
    }
}

const NON_PUBLIC: &str =
    "the host is or resolves to a non-public address, which the gateway does not fetch from";

/// Resolves names for the fetcher's HTTP client and refuses any name with a
/// non-public address. Refusing the whole name rather than filtering keeps the
/// rule simple: a public name with an internal address is misconfigured or an
/// attack, and either way not worth connecting to.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver;

/// Recognised in the error chain so that the client is told why; the address
/// itself is only logged, as it would reveal internal DNS.
#[derive(Debug, thiserror::Error)]
#[error("the name resolves to a non-public address")]
struct NonPublicAddress;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
                tracing::info!(host, ip = %bad.ip(), "client metadata host resolves to a non-public address");
                return Err(Box::new(NonPublicAddress) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn describe_http_error(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<NonPublicAddress>() {
            return NON_PUBLIC.into();
        }
        source = e.source();
    }
    tracing::debug!(error = %err, "client metadata document fetch failed");
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not be fetched: connecting to the host failed".into()
    } else if err.is_body() || err.is_decode() {
        "could not be fetched: the response body was cut off".into()
    } else {
        "could not be fetched".into()
    }
}

/// Whether a fetch may connect to `ip` (when private networks are not allowed):
/// only globally routable unicast addresses.
fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = a == 0 // "this network", including 0.0.0.0
        || a == 10 // RFC 1918
        || a == 127 // loopback
        || (a == 100 && (64..=127).contains(&b)) // CGNAT, RFC 6598
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // These reach an IPv4 address, so that address decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix: on IPv6-only hosts every public IPv4 site
        // resolves into it.
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Only 2000::/3 is global unicast; this refuses ::, ::1, IPv4-compatible
    // ::/96, discard 100::/64, unique-local fc00::/7, link-local fe80::/10,
    // site-local fec0::/10 and multicast ff00::/8 in one test.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let internal = match s[0] {
        // 2001::/23 IETF assignments (Teredo, ORCHID, ...), 2001:db8::/32 documentation
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // 6to4: tunnels to any IPv4 address
        0x2002 => true,
        // 3fff::/20 documentation (RFC 9637)
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    !internal
}

/// `application/json` or `application/<anything>+json`, parameters ignored.
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// How long the server allows the response to be reused: `max-age`, or zero for
/// `no-store`/`no-cache`. `None` when it does not say.
fn cache_max_age(headers: &header::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(secs) = directive.strip_prefix("max-age=")
                && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
            {
                max_age = Some(Duration::from_secs(secs));
            }
        }
    }
    max_age
}

/// Check the document against the draft and our rules.
fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientMetadata, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("is not valid JSON ({e})"))?;
    let Value::Object(doc) = value else {
        return Err("is not a JSON object".into());
    };

    match doc.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        Some(Value::String(id)) => {
            return Err(format!(
                "states client_id {}, which is not the URL it was fetched from",
                short(id, 80)
            ));
        }
        Some(_) => return Err("client_id must be a string".into()),
        None => return Err("has no client_id".into()),
    }

    for field in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(field) {
            return Err(format!(
                "must not contain {field}: a public document cannot hold a secret"
            ));
        }
    }
    let token_endpoint_auth_method = match doc.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(m)) if m == "none" => m.clone(),
        Some(Value::String(m)) if m.starts_with("client_secret") => {
            return Err(format!(
                "token_endpoint_auth_method {} is not allowed: a public document cannot hold a \
                 secret",
                short(m, 40)
            ));
        }
        Some(Value::String(m)) => {
            return Err(format!(
                "token_endpoint_auth_method {} is not supported; only \"none\" is",
                short(m, 40)
            ));
        }
        Some(_) => return Err("token_endpoint_auth_method must be a string".into()),
    };

    let redirect_uris = match doc.get("redirect_uris") {
        Some(Value::Array(uris)) if uris.is_empty() => {
            return Err("redirect_uris is empty".into());
        }
        Some(Value::Array(uris)) if uris.len() > MAX_REDIRECT_URIS => {
            return Err(format!("has more than {MAX_REDIRECT_URIS} redirect_uris"));
        }
        Some(Value::Array(uris)) => uris
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => RedirectUri::register(s)
                    .map_err(|e| format!("redirect_uris[{i}]: {}", e.description)),
                _ => Err(format!("redirect_uris[{i}] is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("redirect_uris must be an array of strings".into()),
        None => return Err("has no redirect_uris".into()),
    };

    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name: display_name(&doc),
        client_uri: display_url(&doc, "client_uri"),
        logo_uri: display_url(&doc, "logo_uri"),
        redirect_uris,
        token_endpoint_auth_method,
    })
}

/// The name as the consent page may show it. Characters that reorder or hide
/// text (controls, bidi overrides and isolates) could make one name look like
/// another, so they are dropped.
fn display_name(doc: &Map<String, Value>) -> Option<String> {
    let Some(Value::String(name)) = doc.get("client_name") else {
        return None;
    };
    let cleaned: String = name
        .chars()
        .filter(|&c| {
            !c.is_control()
                && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut out: String = trimmed.chars().take(MAX_CLIENT_NAME_CHARS).collect();
    if out.len() < trimmed.len() {
        out = out.trim_end().to_owned();
        out.push('…');
    }
    Some(out)
}

/// A link or image URL for the consent page: kept only if it is plain `https`
/// (no `javascript:`, no `data:`, no mixed content). A bad one is dropped rather
/// than refusing the client: it is decoration, not authorization.
fn display_url(doc: &Map<String, Value>, field: &str) -> Option<String> {
    let Some(Value::String(text)) = doc.get(field) else {
        return None;
    };
    if text.len() > MAX_URL_LEN {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let ok = url.scheme() == "https"
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none();
    ok.then(|| url.to_string())
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::http::{StatusCode, header as h};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use serde_json::json;

    use super::*;

    fn dev_policy() -> CimdPolicy {
        CimdPolicy {
            allow_private_networks: true,
            ..CimdPolicy::default()
        }
    }

    fn json_response(body: String) -> axum::response::Response {
        ([(h::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// A local server with documents on a number of paths, and a count of the
    /// HTTP requests it saw.
    async fn serve() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));

        let doc = |path: &str| {
            json!({
                "client_id": format!("{base}{path}"),
                "client_name": "  Test\u{202e} App  ",
                "client_uri": "https://app.example.com/",
                "logo_uri": "javascript:alert(1)",
                "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
                "grant_types": ["authorization_code"],
                "some_future_field": {"ignored": true},
            })
        };
        let fixed = |v: Value| {
            let body = v.to_string();
            move || {
                let body = body.clone();
                async move { json_response(body) }
            }
        };

        let mut mismatch = doc("/mismatch");
        mismatch["client_id"] = json!("https://other.example.com/client.json");
        let mut no_redirects = doc("/no-redirects");
        no_redirects
            .as_object_mut()
            .expect("object")
            .remove("redirect_uris");
        let mut js = doc("/js");
        js["redirect_uris"] = json!(["javascript:alert(1)"]);
        let mut secret = doc("/secret");
        secret["client_secret"] = json!("hunter2");
        let mut basic = doc("/basic");
        basic["token_endpoint_auth_method"] = json!("client_secret_basic");
        let mut big = doc("/big");
        big["padding"] = json!("x".repeat(20 * 1024));
        let html = doc("/html").to_string();
        let vendor = doc("/vendor").to_string();
        let short_lived = doc("/short-lived").to_string();
        let slow = doc("/slow").to_string();

        let counter = hits.clone();
        let app = Router::new()
            .route("/good", get(fixed(doc("/good"))))
            .route("/mismatch", get(fixed(mismatch)))
            .route("/no-redirects", get(fixed(no_redirects)))
            .route("/js", get(fixed(js)))
            .route("/secret", get(fixed(secret)))
            .route("/basic", get(fixed(basic)))
            .route("/big", get(fixed(big)))
            .route("/array", get(fixed(json!([1, 2]))))
            .route(
                "/big-chunked",
                get(|| async {
                    let chunks = vec![Ok::<_, Infallible>(Bytes::from(vec![b' '; 1024])); 40];
                    (
                        [(h::CONTENT_TYPE, "application/json")],
                        Body::from_stream(futures_util::stream::iter(chunks)),
                    )
                }),
            )
            .route(
                "/html",
                get(move || async move { ([(h::CONTENT_TYPE, "text/html")], html) }),
            )
            .route(
                "/vendor",
                get(move || async move {
                    (
                        [(
                            h::CONTENT_TYPE,
                            "application/client-metadata+json; charset=utf-8",
                        )],
                        vendor,
                    )
                }),
            )
            .route(
                "/short-lived",
                get(move || async move {
                    (
                        [
                            (h::CONTENT_TYPE, "application/json"),
                            (h::CACHE_CONTROL, "public, max-age=0"),
                        ],
                        short_lived,
                    )
                }),
            )
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    json_response(slow)
                }),
            )
            .route(
                "/slow-body",
                get(|| async {
                    let first = futures_util::stream::once(async {
                        Ok::<_, Infallible>(Bytes::from_static(b"{\"client_id\":"))
                    });
                    let stall = futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Ok::<_, Infallible>(Bytes::from_static(b"\"x\"}"))
                    });
                    (
                        [(h::CONTENT_TYPE, "application/json")],
                        Body::from_stream(first.chain(stall)),
                    )
                }),
            )
            .route(
                "/redirect",
                get(|| async { (StatusCode::FOUND, [(h::LOCATION, "/good")]) }),
            )
            .route(
                "/missing",
                get(|| async { (StatusCode::NOT_FOUND, "no such client") }),
            )
            .layer(axum::middleware::map_request(
                move |req: axum::extract::Request| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        req
                    }
                },
            ));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (base, hits)
    }

    /// A TCP listener that only counts connections: proof that a refused URL
    /// never reached the network, even where TLS would have failed anyway.
    async fn trap(addr: &str) -> Option<(u16, Arc<AtomicUsize>)> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Some((port, accepted))
    }

    async fn refused(fetcher: &CimdFetcher, url: &str) -> String {
        let err = fetcher.fetch(url).await.expect_err(url);
        assert_eq!(err.code, ErrorCode::InvalidClient, "{url}");
        err.description.into_owned()
    }

    #[tokio::test]
    async fn a_valid_document_is_fetched_and_cleaned() {
        let (base, hits) = serve().await;
        let fetcher = CimdFetcher::new(dev_policy());
        let id = format!("{base}/good");
        assert!(fetcher.is_metadata_url(&id));
        let meta = fetcher.fetch(&id).await.expect("valid document");
        assert_eq!(meta.client_id, id);
        assert_eq!(meta.client_name.as_deref(), Some("Test App"));
        assert_eq!(meta.client_uri.as_deref(), Some("https://app.example.com/"));
        assert_eq!(meta.logo_uri, None, "javascript: logo dropped");
        assert_eq!(meta.token_endpoint_auth_method, "none");
        let uris: Vec<&str> = meta.redirect_uris.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            uris,
            ["http://127.0.0.1/callback", "https://app.example.com/cb"]
        );
        assert!(meta.redirect_uris[0].matches("http://127.0.0.1:4711/callback"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let vendor = fetcher
            .fetch(&format!("{base}/vendor"))
            .await
            .expect("+json content type with parameters is accepted");
        assert_eq!(vendor.redirect_uris.len(), 2);
    }

    #[tokio::test]
    async fn successes_and_failures_are_cached_unless_the_server_says_not_to() {
        let (base, hits) = serve().await;
        let fetcher = CimdFetcher::new(dev_policy());
        let id = format!("{base}/good");
        let first = fetcher.fetch(&id).await.expect("valid");
        let second = fetcher.fetch(&id).await.expect("cached");
        assert_eq!(first.client_id, second.client_id);
        assert_eq!(first.redirect_uris, second.redirect_uris);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "second fetch from the cache"
        );

        let bad = format!("{base}/mismatch");
        let e1 = fetcher.fetch(&bad).await.expect_err("mismatch");
        let e2 = fetcher.fetch(&bad).await.expect_err("mismatch, cached");
        assert_eq!(e1, e2);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "failures cached briefly");

        let short_lived = format!("{base}/short-lived");
        fetcher.fetch(&short_lived).await.expect("valid");
        fetcher.fetch(&short_lived).await.expect("valid");
        assert_eq!(hits.load(Ordering::SeqCst), 4, "max-age=0 is not cached");

        let uncached = CimdFetcher::new(CimdPolicy {
            cache_ttl: Duration::ZERO,
            ..dev_policy()
        });
        uncached.fetch(&id).await.expect("valid");
        uncached.fetch(&id).await.expect("valid");
        assert_eq!(hits.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn bad_documents_are_refused_with_the_reason() {
        let (base, hits) = serve().await;
        let fetcher = CimdFetcher::new(dev_policy());
        for (path, why) in [
            ("/mismatch", "not the URL it was fetched from"),
            ("/no-redirects", "has no redirect_uris"),
            ("/js", "redirect_uris[0]"),
            ("/secret", "must not contain client_secret"),
            ("/basic", "client_secret_basic"),
            ("/array", "not a JSON object"),
            ("/html", "content type \"text/html\""),
            ("/missing", "HTTP 404"),
            ("/redirect", "redirect (HTTP 302)"),
        ] {
            let desc = refused(&fetcher, &format!("{base}{path}")).await;
            assert!(desc.contains(why), "{path}: {desc}");
            assert!(!desc.contains("hunter2"), "{path}: secret echoed: {desc}");
            assert!(!desc.contains("some_future_field"), "{path}: body echoed");
        }
        let desc = refused(&fetcher, &format!("{base}/js")).await;
        assert!(desc.contains("javascript"), "{desc}");
        // The redirect target was not fetched.
        assert_eq!(hits.load(Ordering::SeqCst), 9);
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_with_or_without_a_length() {
        let (base, _) = serve().await;
        let fetcher = CimdFetcher::new(dev_policy());
        for path in ["/big", "/big-chunked"] {
            let desc = refused(&fetcher, &format!("{base}{path}")).await;
            assert!(desc.contains("larger than 16384 bytes"), "{path}: {desc}");
        }
    }

    #[tokio::test]
    async fn slow_servers_are_cut_off_including_a_stalled_body() {
        let (base, _) = serve().await;
        let fetcher = CimdFetcher::new(CimdPolicy {
            timeout: Duration::from_millis(300),
            ..dev_policy()
        });
        for path in ["/slow", "/slow-body"] {
            let started = Instant::now();
            let desc = refused(&fetcher, &format!("{base}{path}")).await;
            assert!(
                desc.contains("within 300 ms") || desc.contains("timed out"),
                "{path}: {desc}"
            );
            assert!(started.elapsed() < Duration::from_secs(2), "{path}");
        }
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_before_connecting() {
        let fetcher = CimdFetcher::new(CimdPolicy::default());
        let (port, accepted) = trap("127.0.0.1:0").await.expect("bind");
        let mut urls = vec![
            format!("https://127.0.0.1:{port}/x"),
            format!("https://localhost:{port}/x"),
            format!("https://LOCALHOST.:{port}/x"),
            format!("https://[::ffff:127.0.0.1]:{port}/x"),
            format!("https://2130706433:{port}/x"),
            "https://10.0.0.1/x".to_owned(),
            "https://[::1]/x".to_owned(),
            "https://169.254.169.254/latest".to_owned(),
            "https://[fd00::1]/x".to_owned(),
            "https://100.64.0.1/x".to_owned(),
        ];
        let v6 = trap("[::1]:0").await;
        if let Some((p6, _)) = &v6 {
            urls.push(format!("https://[::1]:{p6}/x"));
        }
        for url in &urls {
            assert!(fetcher.is_metadata_url(url));
            let desc = refused(&fetcher, url).await;
            assert!(desc.contains("non-public address"), "{url}: {desc}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
        if let Some((_, accepted6)) = v6 {
            assert_eq!(accepted6.load(Ordering::SeqCst), 0);
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_addresses() {
        let name: Name = "localhost".parse().expect("name");
        let err = GuardedResolver
            .resolve(name)
            .await
            .err()
            .expect("localhost refused");
        assert!(err.is::<NonPublicAddress>(), "{err}");

        // Through the HTTP client, skipping the checks made before sending: the
        // resolver alone keeps the request from leaving.
        let (port, accepted) = trap("127.0.0.1:0").await.expect("bind");
        let fetcher = CimdFetcher::new(CimdPolicy::default());
        let url = Url::parse(&format!("https://localhost:{port}/x")).expect("url");
        let why = fetcher.download(url).await.expect_err("refused");
        assert_eq!(why, NON_PUBLIC);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn urls_breaking_the_draft_rules_are_refused() {
        let fetcher = CimdFetcher::new(CimdPolicy::default());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for (url, why) in [
            ("http://example.com/x", "must use https"),
            ("https://example.com/", "must have a path"),
            ("https://example.com", "must have a path"),
            ("https://example.com/a#frag", "fragment"),
            ("https://example.com/a#", "fragment"),
            ("https://user:pw@example.com/x", "username or password"),
            ("https://example.com/a/../b", "path segments"),
            ("https://example.com/a/./b", "path segments"),
            ("https://example.com/a/%2E%2e/b", "path segments"),
            ("https://example.com/a b", "plain ASCII"),
            ("https://example.com\\a", "plain ASCII"),
            (long.as_str(), "longer than 2048"),
        ] {
            let desc = refused(&fetcher, url).await;
            assert!(desc.contains(why), "{url}: {desc}");
        }
        assert!(!fetcher.is_metadata_url("http://example.com/x"));
        assert!(!fetcher.is_metadata_url("my-registered-client"));
        assert!(CimdFetcher::new(dev_policy()).is_metadata_url("http://127.0.0.1:1/x"));
        assert!(check_url("https://example.com/a/b..c/.d?x=../y", false).is_ok());
    }

    #[test]
    fn only_public_addresses_are_allowed() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("172.32.0.1", true),
            ("100.128.0.1", true),
            ("2606:4700::1111", true),
            ("2001:4860:4860::8888", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
            ("0.0.0.0", false),
            ("127.0.0.1", false),
            ("127.255.0.9", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("198.18.0.1", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("64:ff9b::a00:1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("2001::1", false),
            ("2002:7f00:1::1", false),
            ("3fff::1", false),
            ("100::1", false),
        ] {
            let addr: IpAddr = ip.parse().expect(ip);
            assert_eq!(is_public_ip(addr), public, "{ip}");
        }
    }

    #[test]
    fn display_fields_are_cleaned() {
        let doc = |v: Value| v.as_object().cloned().expect("object");
        let long = "n".repeat(300);
        let d = doc(json!({"client_name": long}));
        let name = display_name(&d).expect("name");
        assert_eq!(name.chars().count(), MAX_CLIENT_NAME_CHARS + 1);
        assert!(name.ends_with('…'));
        assert_eq!(display_name(&doc(json!({"client_name": " \n\t "}))), None);
        assert_eq!(display_name(&doc(json!({"client_name": 7}))), None);
        assert_eq!(
            display_url(
                &doc(json!({"logo_uri": "http://app.example.com/l.png"})),
                "logo_uri"
            ),
            None
        );
        assert_eq!(
            display_url(
                &doc(json!({"logo_uri": "data:image/png;base64,AAAA"})),
                "logo_uri"
            ),
            None
        );
    }

    #[test]
    fn cache_control_is_read() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(cache_max_age(&headers), None);
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("public, max-age=60"),
        );
        assert_eq!(cache_max_age(&headers), Some(Duration::from_secs(60)));
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("max-age=60, no-store"),
        );
        assert_eq!(cache_max_age(&headers), Some(Duration::ZERO));
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/oauth-client+json"));
        assert!(!is_json_media_type("text/json"));
        assert!(!is_json_media_type("application/jsonp"));
        assert!(!is_json_media_type(""));
    }
}
