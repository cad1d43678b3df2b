//! Legacy HTTP+SSE backend (MCP 2024-11-05): one GET stream carries everything the
//! server says; the client POSTs to the endpoint the server announces first.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::streamable::error_chain;
use super::{BackendError, InboxRef, body_excerpt, header_map};
use crate::config::ServiceName;
use crate::jsonrpc::{self, Message, code};
use crate::service::Service;

pub struct SseBackend {
    service: ServiceName,
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    inbox: InboxRef,
    cancel: CancellationToken,
}

impl SseBackend {
    pub async fn connect(
        service: &Arc<Service>,
        url: Url,
        headers: &BTreeMap<String, String>,
        inbox: InboxRef,
    ) -> Result<SseBackend, BackendError> {
        let name = service.name.clone();
        let headers = header_map(headers)?;
        let unreachable = |why: String| {
            BackendError::Connect(format!("service {:?} is unreachable: {why}", name.as_str()))
        };
        let connect = async {
            let resp = service
                .http
                .get(url.clone())
                .headers(headers.clone())
                .header(ACCEPT, "text/event-stream")
                .send()
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                return Err(unreachable(format!("HTTP {status}{}", body_excerpt(&body))));
            }
            let mut events = resp.bytes_stream().eventsource();
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| unreachable(e.to_string()))?;
                if ev.event == "endpoint" {
                    let endpoint = url
                        .join(ev.data.trim())
                        .map_err(|e| unreachable(format!("bad endpoint event: {e}")))?;
                    // Never let a server send our configured headers elsewhere.
                    if endpoint.origin() != url.origin() {
                        return Err(unreachable(
                            "its endpoint event points to another origin".to_string(),
                        ));
                    }
                    return Ok((endpoint, events));
                }
            }
            Err(unreachable(
                "the stream ended before the endpoint event".into(),
            ))
        };
        let (endpoint, mut events) =
            match tokio::time::timeout(service.limits.startup_timeout, connect).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(unreachable(format!(
                        "no endpoint event within {} (startupTimeout)",
                        humantime::format_duration(service.limits.startup_timeout)
                    )));
                }
            };

        let cancel = CancellationToken::new();
        let reader_cancel = cancel.clone();
        let reader_inbox = inbox.clone();
        let reader_name = name.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    e = events.next() => e,
                    () = reader_cancel.cancelled() => return,
                };
                let Some(Ok(ev)) = next else { break };
                if !(ev.event.is_empty() || ev.event == "message") || ev.data.trim().is_empty() {
                    continue;
                }
                match Message::parse(Bytes::from(ev.data)) {
                    Ok(m) => match reader_inbox.upgrade() {
                        Some(i) => i.deliver(m, None),
                        None => return,
                    },
                    Err(e) => {
                        tracing::warn!(service = %reader_name, "ignored an SSE event that is not JSON-RPC: {}", e.message())
                    }
                }
            }
            if let Some(i) = reader_inbox.upgrade() {
                i.backend_closed(format!(
                    "service {:?} closed its SSE stream",
                    reader_name.as_str()
                ));
            }
        });

        Ok(SseBackend {
            service: name,
            client: service.http.clone(),
            endpoint,
            headers,
            inbox,
            cancel,
        })
    }

    pub async fn send(&self, msg: Message) {
        let id = msg.request_id().cloned();
        let req = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(msg.raw);
        let failure = match req.send().await {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap_or_default();
                Some(format!(
                    "service {:?} answered HTTP {status}{}",
                    self.service.as_str(),
                    body_excerpt(&body)
                ))
            }
            Err(e) => Some(format!(
                "service {:?} is unreachable: {}",
                self.service.as_str(),
                error_chain(&e)
            )),
        };
        if let Some(why) = failure {
            match (&id, self.inbox.upgrade()) {
                (Some(id), Some(inbox)) => inbox.deliver(
                    jsonrpc::error_response(Some(id), code::BACKEND_UNAVAILABLE, &why, None),
                    Some(id.clone()),
                ),
                _ => tracing::warn!(service = %self.service, "{why}"),
            }
        }
    }

    pub fn close(&self) {
        self.cancel.cancel();
    }
}
