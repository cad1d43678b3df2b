//! Backends: how the gateway talks to one MCP server for one session.
//!
//! Every kind moves whole JSON-RPC [`Message`]s in both directions. Messages from
//! the server are handed to an [`Inbox`] (the session), tagged with the client
//! request they belong to when the transport knows it (a streamable HTTP response
//! stream does; a stdio pipe does not).

pub mod deferred;
pub mod process;
pub mod shared;
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

pub enum Backend {
    Stdio(stdio::StdioBackend),
    StreamableHttp(streamable::HttpBackend),
    Sse(sse::SseBackend),
    /// Waiting for the person's token (see `deferred`).
    Deferred(Arc<deferred::Deferred>),
    /// One session's share of a person's shared backend (see `shared`).
    Shared(Arc<shared::Member>),
    /// Several services as one, or a service under policy (see `aggregate`).
    Aggregate(Arc<crate::aggregate::Aggregate>),
}

/// The person a session belongs to, for `{"$user": ...}` and `{"$userToken": ...}`.
#[derive(Clone)]
pub struct UserContext {
    pub email: String,
    pub sub: String,
    pub token: Option<String>,
    /// Where this person sets their token (`/my/tokens`).
    pub setup_url: String,
    /// The client they connected with (for audit records).
    pub client_id: String,
    /// When `token` expires (upstream OAuth tokens), unix seconds.
    pub token_expires_at: Option<i64>,
    /// Who they are to `policies`.
    pub subject: crate::policy::Subject,
}

impl std::fmt::Debug for UserContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserContext")
            .field("email", &self.email)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// The service's backend settings with this person's values filled in.
fn render_spec(
    spec: &BackendSpec,
    user: Option<&UserContext>,
) -> Result<BackendSpec, BackendError> {
    use crate::config::template::{self, UserValues};
    let missing = || {
        BackendError::Connect(
            "this service needs a signed-in user (per-user values in its configuration)".into(),
        )
    };
    let values = user.map(|u| UserValues {
        email: &u.email,
        sub: &u.sub,
        token: u.token.as_deref(),
    });
    let r = |s: &String| -> Result<String, BackendError> {
        if !template::has_marker(s) {
            return Ok(s.clone());
        }
        let v = values.as_ref().ok_or_else(missing)?;
        template::render(s, v).map_err(|e| BackendError::Connect(e.to_string()))
    };
    let map = |m: &std::collections::BTreeMap<String, String>| -> Result<std::collections::BTreeMap<String, String>, BackendError> {
        m.iter().map(|(k, v)| Ok((k.clone(), r(v)?))).collect()
    };
    Ok(match spec {
        BackendSpec::Stdio {
            command,
            args,
            env,
            cwd,
        } => BackendSpec::Stdio {
            command: command.clone(),
            args: args.iter().map(r).collect::<Result<_, _>>()?,
            env: map(env)?,
            cwd: cwd.clone(),
        },
        BackendSpec::StreamableHttp { url, headers } => BackendSpec::StreamableHttp {
            url: render_url(url, user)?,
            headers: map(headers)?,
        },
        BackendSpec::Sse { url, headers } => BackendSpec::Sse {
            url: render_url(url, user)?,
            headers: map(headers)?,
        },
    })
}

fn render_url(url: &url::Url, user: Option<&UserContext>) -> Result<url::Url, BackendError> {
    use crate::config::template::{self, UserValues};
    // Placeholders are percent-encoded inside a parsed URL.
    let text = url.as_str().replace("%EE%80%80", "\u{E000}");
    if !text.contains('\u{E000}') {
        return Ok(url.clone());
    }
    let u = user.ok_or_else(|| {
        BackendError::Connect(
            "this service needs a signed-in user (per-user values in its URL)".into(),
        )
    })?;
    // Each value is percent-encoded, so a `+`, `/` or `..` in a token or an
    // email stays data and never changes the URL's structure.
    let enc = |v: &str| -> String {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let (email, sub, token) = (enc(&u.email), enc(&u.sub), u.token.as_deref().map(enc));
    let values = UserValues {
        email: &email,
        sub: &sub,
        token: token.as_deref(),
    };
    let rendered =
        template::render(&text, &values).map_err(|e| BackendError::Connect(e.to_string()))?;
    url::Url::parse(&rendered)
        .map_err(|e| BackendError::Connect(format!("the per-user URL is not valid: {e}")))
}

impl Backend {
    /// Start a backend for one session: spawn the process, or connect.
    pub async fn start(service: &Arc<Service>, inbox: InboxRef) -> Result<Backend, BackendError> {
        Backend::start_for(service, inbox, None).await
    }

    /// Start a backend for one person's session: their values filled in. A
    /// service that needs their token, when they have none yet, gets a
    /// [`deferred::Deferred`] backend that explains where to set it.
    pub async fn start_for(
        service: &Arc<Service>,
        inbox: InboxRef,
        user: Option<&UserContext>,
    ) -> Result<Backend, BackendError> {
        use crate::aggregate::Aggregate;
        use crate::service::Kind;
        if let Kind::Aggregate(members) = &service.kind {
            return Ok(Backend::Aggregate(Aggregate::new(
                service,
                members.clone(),
                true,
                service.access.clone(),
                inbox,
                user,
            )));
        }
        if service.governed {
            return Ok(Backend::Aggregate(Aggregate::new(
                service,
                vec![service.clone()],
                false,
                service.access.clone(),
                inbox,
                user,
            )));
        }
        Backend::start_member(service, inbox, user).await
    }

    /// Start one service's backend as it is (no policy): deferred until the
    /// person's token is set, shared between their sessions, or their own.
    pub async fn start_member(
        service: &Arc<Service>,
        inbox: InboxRef,
        user: Option<&UserContext>,
    ) -> Result<Backend, BackendError> {
        if let Some(u) = user
            && service.needs_user_token
            && u.token.is_none()
        {
            return Ok(Backend::Deferred(deferred::Deferred::new(
                service,
                inbox,
                u.clone(),
            )));
        }
        if let Some(pool) = &service.shared {
            // Keyed by person and token: after a token changes, new sessions get
            // a process with the new one (the old process ends with its sessions).
            let key = user.map(|u| {
                (
                    crate::caller::UserId::new(u.sub.clone()),
                    u.token
                        .as_deref()
                        .map(|t| crate::util::sha256_hex(t.as_bytes())),
                )
            });
            return pool.join(service, key, user, inbox).await;
        }
        Backend::start_plain(service, inbox, user).await
    }

    /// Start the service's own backend (no deferral, no sharing).
    pub async fn start_plain(
        service: &Arc<Service>,
        inbox: InboxRef,
        user: Option<&UserContext>,
    ) -> Result<Backend, BackendError> {
        let crate::service::Kind::Server(spec) = &service.kind else {
            return Err(BackendError::Connect(format!(
                "{} is an aggregated endpoint, not a server",
                service.name
            )));
        };
        let spec = render_spec(spec, user)?;
        match &spec {
            BackendSpec::Stdio {
                command,
                args,
                env,
                cwd,
            } => stdio::StdioBackend::spawn(service, command, args, env, cwd.as_deref(), inbox)
                .map(Backend::Stdio),
            BackendSpec::StreamableHttp { url, headers } => Ok(Backend::StreamableHttp(
                streamable::HttpBackend::new(service, url.clone(), headers, inbox)?,
            )),
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
            Backend::Sse(b) => {
                b.send(msg).await;
                Ok(())
            }
            Backend::Deferred(d) => d.send(msg).await,
            Backend::Shared(m) => m.send(msg).await,
            Backend::Aggregate(a) => a.send(msg).await,
        }
    }

    /// The client now has a stream for server-initiated messages.
    pub fn client_listens(&self) {
        match self {
            Backend::StreamableHttp(b) => b.client_listens(),
            Backend::Deferred(d) => {
                if let Some(real) = d.real() {
                    real.client_listens();
                }
            }
            Backend::Shared(m) => m.client_listens(),
            Backend::Aggregate(a) => a.client_listens(),
            _ => {}
        }
    }

    /// Whether this backend runs a process of its own (for `/ready`).
    pub fn is_process(&self) -> bool {
        match self {
            Backend::Stdio(_) => true,
            Backend::Deferred(d) => d.real().is_some_and(Backend::is_process),
            _ => false,
        }
    }

    /// How many processes of its own it runs (for `/ready`).
    pub fn process_count(&self) -> usize {
        match self {
            Backend::Aggregate(a) => a.process_count(),
            b => usize::from(b.is_process()),
        }
    }

    /// End the backend: stop the process group, or end the remote session.
    pub async fn close(&self) {
        match self {
            Backend::Stdio(b) => b.close().await,
            Backend::StreamableHttp(b) => b.close().await,
            Backend::Sse(b) => b.close(),
            Backend::Deferred(d) => d.close().await,
            Backend::Shared(m) => m.close().await,
            Backend::Aggregate(a) => a.close().await,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_values_in_urls_are_encoded() {
        let url = url::Url::parse(&format!(
            "https://api.example.com/u/{}?key={}",
            crate::config::template::EMAIL,
            crate::config::template::TOKEN
        ))
        .unwrap();
        let user = UserContext {
            email: "a+b@x.com".into(),
            sub: "local:a".into(),
            token: Some("ab+c/d../e&f=g".into()),
            setup_url: String::new(),
            client_id: String::new(),
            token_expires_at: None,
            subject: crate::policy::Subject::anonymous(),
        };
        let out = render_url(&url, Some(&user)).unwrap();
        assert_eq!(out.path(), "/u/a%2Bb%40x%2Ecom");
        let key: Vec<(String, String)> = out
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(key, vec![("key".to_string(), "ab+c/d../e&f=g".to_string())]);
    }
}
