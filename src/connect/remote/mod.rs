//! The remote side: streamable HTTP (with legacy SSE as a fallback), carrying the
//! client's JSON-RPC messages unchanged and writing whatever the server says to
//! stdout, one message per line.
//!
//! This file holds [`Remote`] (the session state both transports share, the
//! headers and token of every request, the JSON-RPC error for a request that
//! cannot be delivered, the final DELETE) and the choice of transport;
//! [`streamable`] is streamable HTTP (POST answers, resumable SSE streams, the
//! GET stream, a new session when the server forgets one), [`sse`] the legacy
//! HTTP+SSE transport (MCP 2024-11-05).

mod modern;
mod sse;
mod streamable;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::oauth::{Auth, AuthError};
use super::trace::Traced;
use super::util::{Challenge, UnsetVar, compact, parse_challenge};
use crate::jsonrpc::Message;
pub use sse::LegacyError;

/// Why a message did not reach the server or its answer did not come back.
/// The text goes to stderr and into the JSON-RPC error the client gets; it
/// names the server and what to do, never the token sent.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "{url} refuses the Authorization header given with --header (401); check its value, or drop it to sign in instead"
    )]
    HeaderRefused { url: String },
    #[error(
        "{url} is neither a streamable HTTP endpoint ({status} to POST) nor a legacy SSE one: {source}"
    )]
    NeitherTransport {
        url: String,
        status: StatusCode,
        source: Box<RemoteError>,
    },
    #[error(
        "{url} answered {status} to the initialize POST; is it an MCP endpoint? (--transport sse for legacy SSE servers)"
    )]
    NotMcp { url: String, status: StatusCode },
    #[error("cannot reach {url} ({what}): {source}")]
    Unreachable {
        url: String,
        what: String,
        source: reqwest::Error,
    },
    #[error("{url} still answers 401 to {what} after signing in again; giving up on this request")]
    StillUnauthorized { url: String, what: String },
    #[error("{url} refuses {what} (403): {body}")]
    Forbidden {
        url: String,
        what: String,
        body: String,
    },
    #[error("{url} answered {status} to {what}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        what: String,
        body: String,
    },
    #[error("reading the answer of {url}: {source}")]
    ReadAnswer { url: String, source: reqwest::Error },
    #[error(
        "{url} closed the answer stream of a request without answering it, and gave no event id to resume from"
    )]
    NoResumeId { url: String },
    #[error("{url} did not answer a request after {attempts} attempts to resume its stream")]
    ResumeGaveUp { url: String, attempts: u32 },
    #[error("{url} refused to resume an answer stream ({status}): {body}")]
    ResumeRefused {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url} forgot the session, and the client's initialize is not known to replay")]
    NothingToReplay { url: String },
    #[error("{url} refused a new session ({status})")]
    NewSessionRefused { url: String, status: StatusCode },
    #[error("{url} refused initialized ({status})")]
    InitializedRefused { url: String, status: StatusCode },
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error(
        "{url} does not speak MCP 2026-07-28 (it does not answer server/discover); drop --protocol 2026-07-28 to use the session era"
    )]
    NotModern { url: String },
}

/// A `--header` flag that cannot be used. Names the flag and the header, never
/// its value (which may be a secret, such as an Authorization header).
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(
        "--header number {position} is not \"Name: value\" (a colon separates the name from the value; the flag is not shown, its value may be a secret)"
    )]
    NoColon { position: usize },
    #[error("--header {name:?}: not a valid header name")]
    BadName { name: String },
    #[error(transparent)]
    Env(#[from] UnsetVar),
    #[error("--header {name}: the value has characters a header cannot carry")]
    BadValue { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// Streamable HTTP; legacy SSE if the server refuses the first POST.
    Auto,
    Streamable,
    /// Legacy HTTP+SSE (MCP 2024-11-05).
    Sse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolChoice {
    /// 2026-07-28 if the server answers `server/discover`, else the session era.
    Auto,
    /// The session era (`initialize`, `Mcp-Session-Id`), without asking.
    Session,
    /// MCP 2026-07-28 only: stop if the server does not speak it.
    #[value(name = "2026-07-28")]
    Modern,
}

#[derive(Default)]
struct SessionState {
    session: Option<String>,
    /// The protocol version the server chose in its initialize answer.
    version: Option<String>,
    /// The client's initialize and initialized, replayed if the server forgets the session.
    init: Option<Message>,
    initialized: Option<Message>,
    /// Bumped on every new session, so a GET stream of an old one stops.
    generation: u64,
    get_running: bool,
}

pub struct Remote {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    pub auth: Arc<Auth>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    state: Mutex<SessionState>,
    reinit: tokio::sync::Mutex<()>,
    transport: TransportKind,
    protocol: ProtocolChoice,
    legacy: OnceLock<Url>,
    legacy_starting: tokio::sync::Mutex<()>,
    pub shutdown: CancellationToken,
    /// Set when the bridge cannot go on (the legacy stream died): exit non-zero.
    pub failed: AtomicBool,
    /// Set when the server speaks MCP 2026-07-28 (found at initialize).
    modern: OnceLock<Arc<modern::Modern>>,
}

enum PostError {
    /// The server does not take POSTs here: maybe a legacy SSE server.
    NotStreamable(StatusCode),
    Other(RemoteError),
}

impl From<RemoteError> for PostError {
    fn from(e: RemoteError) -> Self {
        PostError::Other(e)
    }
}

impl From<AuthError> for PostError {
    fn from(e: AuthError) -> Self {
        PostError::Other(e.into())
    }
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn challenge_of(resp: &reqwest::Response) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

fn is_sse(resp: &reqwest::Response) -> bool {
    header_str(resp, "content-type").is_some_and(|c| c.starts_with("text/event-stream"))
}

/// A short, single-line excerpt of an error body for a message; not shown at
/// all when it quotes the token that was sent.
async fn excerpt(resp: reqwest::Response, token: Option<&str>) -> String {
    let body = resp.bytes().await.unwrap_or_default();
    if let Some(t) = token.filter(|t| !t.is_empty())
        && body.windows(t.len()).any(|w| w == t.as_bytes())
    {
        return "(the body quotes the access token sent; not shown)".into();
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// Parse `--header "Name: value"` flags; values may be `env:VAR`.
pub fn parse_headers(flags: &[String]) -> Result<HeaderMap, HeaderError> {
    let mut map = HeaderMap::new();
    for (i, flag) in flags.iter().enumerate() {
        let (name, value) = flag
            .split_once(':')
            .ok_or(HeaderError::NoColon { position: i + 1 })?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| HeaderError::BadName {
                name: name.trim().to_string(),
            })?;
        let value = super::util::resolve_value(value.trim(), &format!("--header {name}"))?;
        let value = HeaderValue::from_str(&value).map_err(|_| HeaderError::BadValue {
            name: name.to_string(),
        })?;
        map.append(name, value);
    }
    Ok(map)
}

impl Remote {
    pub fn new(
        url: Url,
        headers: HeaderMap,
        auth: Arc<Auth>,
        out: mpsc::UnboundedSender<Vec<u8>>,
        transport: TransportKind,
        protocol: ProtocolChoice,
    ) -> Result<Remote, RemoteError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RemoteError::HttpClient)?;
        Ok(Remote {
            http,
            url,
            headers,
            auth,
            out,
            state: Mutex::new(SessionState::default()),
            reinit: tokio::sync::Mutex::new(()),
            transport,
            protocol,
            legacy: OnceLock::new(),
            legacy_starting: tokio::sync::Mutex::new(()),
            shutdown: CancellationToken::new(),
            failed: AtomicBool::new(false),
            modern: OnceLock::new(),
        })
    }

    /// An Authorization header given with --header replaces sign-in.
    fn fixed_authorization(&self) -> bool {
        self.headers.contains_key(reqwest::header::AUTHORIZATION)
    }

    async fn bearer(&self) -> Result<Option<String>, RemoteError> {
        if self.fixed_authorization() {
            return Ok(None);
        }
        Ok(self.auth.bearer().await?)
    }

    async fn unauthorized(
        &self,
        sent: Option<&str>,
        resp: &reqwest::Response,
    ) -> Result<(), RemoteError> {
        if self.fixed_authorization() {
            return Err(RemoteError::HeaderRefused {
                url: self.url.to_string(),
            });
        }
        Ok(self.auth.unauthorized(sent, challenge_of(resp)).await?)
    }

    /// A 401 or 403 answer to `what`: sign in (again) or step up the scopes,
    /// and `Ok(None)` to send it again; an error when that cannot help (two
    /// sign-ins already, a 403 that is not `insufficient_scope`). Any other
    /// answer is given back.
    async fn auth_refusal(
        &self,
        resp: reqwest::Response,
        token: Option<&str>,
        what: &str,
        rounds: &mut u32,
    ) -> Result<Option<reqwest::Response>, RemoteError> {
        match resp.status().as_u16() {
            401 => {
                *rounds += 1;
                if *rounds > 2 {
                    return Err(RemoteError::StillUnauthorized {
                        url: self.url.to_string(),
                        what: what.to_string(),
                    });
                }
                self.unauthorized(token, &resp).await?;
                Ok(None)
            }
            403 => {
                let ch = challenge_of(&resp).unwrap_or_default();
                if ch.error.as_deref() != Some("insufficient_scope")
                    || *rounds >= 3
                    || self.fixed_authorization()
                {
                    return Err(RemoteError::Forbidden {
                        url: self.url.to_string(),
                        what: what.to_string(),
                        body: excerpt(resp, token).await,
                    });
                }
                *rounds += 1;
                self.auth.step_up(token, ch).await?;
                Ok(None)
            }
            _ => Ok(Some(resp)),
        }
    }

    fn state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn emit(&self, raw: &[u8]) {
        let _ = self.out.send(compact(raw));
    }

    /// Send one client message; a request that cannot be delivered is answered
    /// with a JSON-RPC error so the client never waits forever.
    pub async fn send(self: &Arc<Self>, msg: Message) {
        if let Err(e) = self.deliver(&msg).await {
            eprintln!("mcpgate connect: {e}");
            if let Some(id) = msg.request_id() {
                let err = crate::jsonrpc::error_response(
                    Some(id),
                    crate::jsonrpc::code::INTERNAL_ERROR,
                    &format!("mcpgate connect: {e}"),
                    None,
                );
                self.emit(&err.raw);
            }
        }
    }

    async fn deliver(self: &Arc<Self>, msg: &Message) -> Result<(), RemoteError> {
        if let Some(m) = self.modern.get() {
            return self.modern_deliver(m, msg).await;
        }
        // The era is found at the client's first initialize (a 2026-07-28
        // server answers `server/discover`; any other answer: the session era).
        if msg.method() == Some("initialize")
            && self.protocol != ProtocolChoice::Session
            && self.transport != TransportKind::Sse
            && self.legacy.get().is_none()
            && self.state(|s| s.session.is_none())
        {
            if self.try_modern(msg).await? {
                return Ok(());
            }
            if self.protocol == ProtocolChoice::Modern {
                return Err(RemoteError::NotModern {
                    url: self.url.to_string(),
                });
            }
        }
        match msg.method() {
            Some("initialize") => self.state(|s| s.init = Some(msg.clone())),
            Some("notifications/initialized") => self.state(|s| s.initialized = Some(msg.clone())),
            _ => {}
        }
        if self.transport == TransportKind::Sse || self.legacy.get().is_some() {
            return self.legacy_post(msg).await;
        }
        match self.post(msg, true, true).await {
            Ok(()) => {}
            Err(PostError::NotStreamable(status)) if self.transport == TransportKind::Auto => {
                eprintln!(
                    "mcpgate connect: {} answered {status} to a POST; trying the legacy SSE transport",
                    self.url
                );
                self.start_legacy()
                    .await
                    .map_err(|e| RemoteError::NeitherTransport {
                        url: self.url.to_string(),
                        status,
                        source: Box::new(e),
                    })?;
                return self.legacy_post(msg).await;
            }
            Err(PostError::NotStreamable(status)) => {
                return Err(RemoteError::NotMcp {
                    url: self.url.to_string(),
                    status,
                });
            }
            Err(PostError::Other(e)) => return Err(e),
        }
        if msg.method() == Some("notifications/initialized") {
            self.open_get_stream().await;
        }
        Ok(())
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let (session, version) = self.state(|s| (s.session.clone(), s.version.clone()));
        let mut req = self.http.request(method, url.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        // Last, so that a user's own Authorization header wins.
        req.headers(self.headers.clone())
    }

    /// End the remote session (DELETE), as the spec asks of a client that leaves.
    pub async fn close(&self) {
        let Some(session) = self.state(|s| s.session.take()) else {
            return;
        };
        let token = if self.fixed_authorization() {
            None
        } else {
            self.auth.bearer_cached()
        };
        let mut req = self
            .http
            .delete(self.url.clone())
            .header("mcp-session-id", session);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let req = req.headers(self.headers.clone());
        match tokio::time::timeout(Duration::from_secs(5), req.traced("mcp.delete")).await {
            Ok(Ok(r))
                if r.status().is_success() || r.status() == StatusCode::METHOD_NOT_ALLOWED => {}
            Ok(Ok(r)) => eprintln!(
                "mcpgate connect: ending the session at {} answered {}",
                self.url,
                r.status()
            ),
            Ok(Err(e)) => eprintln!("mcpgate connect: ending the session at {}: {e}", self.url),
            Err(_) => eprintln!(
                "mcpgate connect: ending the session at {} timed out",
                self.url
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_name_the_flag_never_its_value() {
        let err = parse_headers(&["Authorization Bearer secret-1".into()]).expect_err("no colon");
        let text = err.to_string();
        assert!(text.contains("--header number 1"), "{text}");
        assert!(!text.contains("secret-1"), "{text}");
        let err =
            parse_headers(&["X-Ok: 1".into(), "Bad Name: secret-2".into()]).expect_err("bad name");
        let text = err.to_string();
        assert!(text.contains("\"Bad Name\""), "{text}");
        assert!(!text.contains("secret-2"), "{text}");
        let err = parse_headers(&["X-Key: a\u{7}secret-3".into()]).expect_err("bad value");
        assert!(!err.to_string().contains("secret-3"), "{err}");
        let map = parse_headers(&["X-Team: platform".into()]).expect("valid");
        assert_eq!(map["x-team"], "platform");
    }

    #[tokio::test]
    async fn an_error_body_that_quotes_the_token_is_not_shown() {
        let response = |body: &'static str| {
            reqwest::Response::from(axum::http::Response::new(reqwest::Body::from(body)))
        };
        let quoted = excerpt(
            response("bad token access-secret-1"),
            Some("access-secret-1"),
        )
        .await;
        assert!(!quoted.contains("access-secret-1"), "{quoted}");
        let plain = excerpt(response("no\nsuch tool"), Some("access-secret-1")).await;
        assert_eq!(plain, "no such tool");
        assert_eq!(excerpt(response(""), None).await, "(empty body)");
    }
}
