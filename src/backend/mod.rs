//! Backends: a transport to one MCP server (stdio, streamable HTTP, legacy
//! SSE), and nothing else. What sits between a client and its backends
//! (deferral, sharing, policy, aggregation) is `route`'s business.
//!
//! Every kind moves whole JSON-RPC [`Message`]s in both directions. Messages from
//! the server are handed to an [`Inbox`] (the session), tagged with the client
//! request they belong to when the transport knows it (a streamable HTTP response
//! stream does; a stdio pipe does not).

mod modern;
pub mod process;
mod sse;
mod stdio;
mod streamable;

use std::sync::{Arc, Weak};

use crate::config::BackendSpec;
use crate::jsonrpc::{Message, RequestId};
use crate::service::Service;

/// Where a backend delivers what its server says.
pub trait Inbox: Send + Sync + 'static {
    fn deliver(&self, msg: Message, related: Option<RequestId>);
    /// The backend is gone for good (process exited, remote session lost).
    fn backend_closed(&self, reason: String);
}

pub type InboxRef = Weak<dyn Inbox>;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("could not start {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Connect(String),
    #[error("the backend is closed")]
    Closed,
}

/// A transport to one MCP server, started for one session (or one shared
/// process, or one member of an aggregate).
pub enum Backend {
    Stdio(stdio::StdioBackend),
    StreamableHttp(streamable::HttpBackend),
    /// Streamable HTTP to a server that speaks MCP 2026-07-28.
    Modern(modern::ModernBackend),
    Sse(sse::SseBackend),
}

impl Backend {
    /// Start a transport to the server `spec` describes (its per-person values
    /// already filled in): spawn the process, or connect.
    pub async fn start(
        service: &Arc<Service>,
        spec: &BackendSpec,
        inbox: InboxRef,
    ) -> Result<Backend, BackendError> {
        match spec {
            BackendSpec::Stdio {
                command,
                args,
                env,
                cwd,
            } => stdio::StdioBackend::spawn(service, command, args, env, cwd.as_deref(), inbox)
                .map(Backend::Stdio),
            BackendSpec::StreamableHttp { url, headers } => {
                match modern::probe::discover(service, url, headers).await {
                    Some(discover) => Ok(Backend::Modern(modern::ModernBackend::new(
                        service,
                        url.clone(),
                        headers,
                        discover,
                        inbox,
                    )?)),
                    None => Ok(Backend::StreamableHttp(streamable::HttpBackend::new(
                        service,
                        url.clone(),
                        headers,
                        inbox,
                    )?)),
                }
            }
            BackendSpec::Sse { url, headers } => {
                sse::SseBackend::connect(service, url.clone(), headers, inbox)
                    .await
                    .map(Backend::Sse)
            }
        }
    }

    /// Send one message to the server. Errors are reported to the inbox as
    /// JSON-RPC errors for the request concerned, so callers need not wait.
    pub async fn send(&self, msg: Message) -> Result<(), BackendError> {
        match self {
            Backend::Stdio(b) => b.send(msg),
            Backend::StreamableHttp(b) => {
                b.send(msg).await;
                Ok(())
            }
            Backend::Modern(b) => {
                b.send(msg).await;
                Ok(())
            }
            Backend::Sse(b) => {
                b.send(msg).await;
                Ok(())
            }
        }
    }

    /// The client now has a stream for server-initiated messages.
    pub fn client_listens(&self) {
        match self {
            Backend::StreamableHttp(b) => b.client_listens(),
            Backend::Modern(b) => b.client_listens(),
            _ => {}
        }
    }

    /// Whether this backend runs a process of its own (for `/ready`).
    pub fn is_process(&self) -> bool {
        matches!(self, Backend::Stdio(_))
    }

    /// End the backend: stop the process group, or end the remote session.
    pub async fn close(&self) {
        match self {
            Backend::Stdio(b) => b.close().await,
            Backend::StreamableHttp(b) => b.close().await,
            Backend::Modern(b) => b.close().await,
            Backend::Sse(b) => b.close(),
        }
    }
}

/// Whether the remote server at `url` speaks MCP 2026-07-28 (a
/// `server/discover` probe, remembered per service for a while).
pub async fn speaks_2026(
    service: &Service,
    url: &url::Url,
    headers: &std::collections::BTreeMap<String, String>,
) -> bool {
    modern::probe::discover(service, url, headers)
        .await
        .is_some()
}

/// Whether the last probe found the service speaking only the session era
/// (no request then: a cheap check before the work of a passthrough).
pub fn known_session_era(service: &Service) -> bool {
    matches!(service.era.get(modern::probe::REMEMBER), Some(None))
}

/// Configured headers as a `HeaderMap` (names were validated with the config).
fn header_map(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<reqwest::header::HeaderMap, BackendError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| BackendError::Connect(format!("invalid header name {k:?}")))?;
        let mut value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| BackendError::Connect(format!("header {k:?} has an invalid value")))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// A short, secret-free description of an HTTP failure body for error messages.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed: String = text.trim().chars().take(200).collect();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}
