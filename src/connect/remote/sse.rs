//! Legacy HTTP+SSE (MCP 2024-11-05): one GET stream that first names the
//! endpoint to POST messages to (same origin only: tokens go there) and then
//! carries every answer. It cannot resume, so the bridge stops when it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::sync::oneshot;

use super::{Remote, RemoteError, excerpt, is_sse};
use crate::connect::trace::Traced;
use crate::jsonrpc::Message;

/// How long the server has to name its message endpoint.
const ENDPOINT_WAIT: Duration = Duration::from_secs(30);

/// Why the legacy SSE transport could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("GET answered {status} without an event stream")]
    NoStream { status: StatusCode },
    #[error("no endpoint event within {}s", ENDPOINT_WAIT.as_secs())]
    NoEndpointEvent,
    #[error("the stream ended before its endpoint event")]
    EndedBeforeEndpoint,
    #[error("the endpoint event {endpoint:?} is not a URL: {source}")]
    EndpointNotUrl {
        endpoint: String,
        source: url::ParseError,
    },
    #[error(
        "the endpoint event points to {endpoint}, another origin than {url}; refusing to send messages (and tokens) there"
    )]
    OtherOrigin { endpoint: String, url: String },
    #[error("the legacy SSE endpoint is unknown")]
    EndpointUnknown,
    #[error("{endpoint} answered {status}: {body}")]
    Status {
        endpoint: String,
        status: StatusCode,
        body: String,
    },
}

impl Remote {
    /// Legacy SSE: GET the stream, wait for the `endpoint` event, forward messages.
    pub(super) async fn start_legacy(self: &Arc<Self>) -> Result<(), RemoteError> {
        let _one = self.legacy_starting.lock().await;
        if self.legacy.get().is_some() {
            return Ok(());
        }
        let mut auth_rounds = 0;
        let resp = loop {
            let token = self.bearer().await?;
            let resp = self
                .request(reqwest::Method::GET, &self.url, token.as_deref())
                .header("accept", "text/event-stream")
                .traced("mcp.sse")
                .await
                .map_err(|source| LegacyError::Unreachable {
                    url: self.url.to_string(),
                    source,
                })?;
            if resp.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                self.unauthorized(token.as_deref(), &resp).await?;
                continue;
            }
            if !resp.status().is_success() || !is_sse(&resp) {
                return Err(LegacyError::NoStream {
                    status: resp.status(),
                }
                .into());
            }
            break resp;
        };
        let (tx, rx) = oneshot::channel::<String>();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut events = resp.bytes_stream().eventsource();
            loop {
                let next = tokio::select! {
                    e = events.next() => e,
                    _ = this.shutdown.cancelled() => return,
                };
                let Some(Ok(ev)) = next else { break };
                if ev.event == "endpoint" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(ev.data.trim().to_string());
                    }
                } else if !ev.data.trim().is_empty() {
                    this.emit(ev.data.as_bytes());
                }
            }
            // Legacy SSE cannot resume: the session is gone with the stream.
            eprintln!(
                "mcpgate connect: the legacy SSE stream of {} ended; stopping",
                this.url
            );
            this.failed.store(true, Ordering::SeqCst);
            this.shutdown.cancel();
        });
        let endpoint = tokio::time::timeout(ENDPOINT_WAIT, rx)
            .await
            .map_err(|_| LegacyError::NoEndpointEvent)?
            .map_err(|_| LegacyError::EndedBeforeEndpoint)?;
        let endpoint = self
            .url
            .join(&endpoint)
            .map_err(|source| LegacyError::EndpointNotUrl {
                endpoint: endpoint.clone(),
                source,
            })?;
        if endpoint.origin() != self.url.origin() {
            return Err(LegacyError::OtherOrigin {
                endpoint: endpoint.to_string(),
                url: self.url.to_string(),
            }
            .into());
        }
        let _ = self.legacy.set(endpoint);
        Ok(())
    }

    pub(super) async fn legacy_post(self: &Arc<Self>, msg: &Message) -> Result<(), RemoteError> {
        if self.legacy.get().is_none() {
            self.start_legacy().await?;
        }
        let endpoint = self
            .legacy
            .get()
            .cloned()
            .ok_or(LegacyError::EndpointUnknown)?;
        let mut auth_rounds = 0;
        loop {
            let token = self.bearer().await?;
            let mut req = self.http.post(endpoint.clone());
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .headers(self.headers.clone())
                .header("content-type", "application/json")
                .body(msg.raw.clone())
                .traced("mcp.sse.post")
                .await
                .map_err(|source| LegacyError::Unreachable {
                    url: endpoint.to_string(),
                    source,
                })?;
            if resp.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                self.unauthorized(token.as_deref(), &resp).await?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(LegacyError::Status {
                    endpoint: endpoint.to_string(),
                    status: resp.status(),
                    body: excerpt(resp, token.as_deref()).await,
                }
                .into());
            }
            return Ok(());
        }
    }
}
