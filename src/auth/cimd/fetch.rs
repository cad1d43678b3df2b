//! The network half of a client metadata document: an HTTP client that cannot
//! be steered into the gateway's own network (no proxy, no redirects, no
//! retries, no decompression; names resolved by `GuardedResolver`, which
//! refuses any name with a non-public address, so DNS rebinding between a check
//! and the connection cannot slip through), and a download bounded in size
//! while streaming (`Content-Length` can lie or be absent). Errors and logs
//! never carry the body.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header;
use url::Url;

use super::address::{NON_PUBLIC, is_public_ip};
use super::{CimdPolicy, short};

/// Why a document could not be fetched. The message follows
/// `client metadata document <url>: ` (see [`super::CimdError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailed {
    /// The whole exchange, body included, took longer than the policy allows.
    #[error("was not fetched within {} ms", .0.as_millis())]
    TooSlow(Duration),
    #[error("{NON_PUBLIC}")]
    NonPublic,
    #[error("timed out")]
    TimedOut,
    #[error("could not be fetched: connecting to the host failed")]
    Connect,
    #[error("could not be fetched: the response body was cut off")]
    BodyCutOff,
    #[error("could not be fetched")]
    Other,
    #[error(
        "answered with a redirect (HTTP {0}), which is not followed: serve the document at the client_id URL itself"
    )]
    Redirect(u16),
    #[error("answered HTTP {0}, not 200")]
    Status(u16),
    #[error("has content type {}, not application/json", short(.0, 60))]
    ContentType(String),
    #[error("is larger than {0} bytes")]
    TooLarge(usize),
}

/// The HTTP client for documents: see the module docs for why each setting.
pub fn http_client(policy: &CimdPolicy) -> reqwest::Client {
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
    builder
        .build()
        .expect("the HTTP client for client metadata documents can be built")
}

/// The network half of a fetch: the body (at most `max_bytes`) and the
/// `max-age` the server allows.
pub async fn download(
    http: &reqwest::Client,
    url: Url,
    max_bytes: usize,
) -> Result<(Vec<u8>, Option<Duration>), FetchFailed> {
    let mut resp = http
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| describe_http_error(&e))?;

    let status = resp.status();
    if status.is_redirection() {
        return Err(FetchFailed::Redirect(status.as_u16()));
    }
    if status != reqwest::StatusCode::OK {
        return Err(FetchFailed::Status(status.as_u16()));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_media_type(content_type) {
        return Err(FetchFailed::ContentType(content_type.to_owned()));
    }
    let max_age = cache_max_age(resp.headers());

    let max = max_bytes;
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(FetchFailed::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_http_error(&e))? {
        if body.len() + chunk.len() > max {
            return Err(FetchFailed::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// Resolves names for the fetcher's HTTP client and refuses any name with a
/// non-public address. Refusing the whole name rather than filtering keeps the
/// rule simple: a public name with an internal address is misconfigured or an
/// attack, and either way not worth connecting to.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

/// Recognised in the error chain so that the client is told why; the address
/// itself is only logged, as it would reveal internal DNS.
#[derive(Debug, thiserror::Error)]
#[error("the name resolves to a non-public address")]
pub struct NonPublicAddress;

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

fn describe_http_error(err: &reqwest::Error) -> FetchFailed {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<NonPublicAddress>() {
            return FetchFailed::NonPublic;
        }
        source = e.source();
    }
    tracing::debug!(error = %err, "client metadata document fetch failed");
    if err.is_timeout() {
        FetchFailed::TimedOut
    } else if err.is_connect() {
        FetchFailed::Connect
    } else if err.is_body() || err.is_decode() {
        FetchFailed::BodyCutOff
    } else {
        FetchFailed::Other
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem_and_the_fix() {
        assert_eq!(
            FetchFailed::Redirect(302).to_string(),
            "answered with a redirect (HTTP 302), which is not followed: serve the document at the client_id URL itself"
        );
        assert_eq!(
            FetchFailed::ContentType("text/html".into()).to_string(),
            "has content type \"text/html\", not application/json"
        );
        assert_eq!(
            FetchFailed::TooSlow(Duration::from_millis(300)).to_string(),
            "was not fetched within 300 ms"
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
