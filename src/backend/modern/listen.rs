//! A client's GET stream, for a 2026-07-28 server: `subscriptions/listen` for
//! list changes and the resources the client subscribed to, reopened when the
//! server ends it, until the session closes.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::wire2026::face;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub(super) async fn run(inner: Arc<Inner>, token: CancellationToken) {
    let mut retry = FIRST_RETRY;
    while !token.is_cancelled() {
        let params = inner.face.listen_params();
        let id = crate::jsonrpc::string_id("mcpgate-listen");
        let sent = tokio::select! {
            r = inner.post("subscriptions/listen", &params, Some(&id)).send() => r,
            () = token.cancelled() => return,
        };
        match sent {
            Ok(resp) if resp.status().is_success() => {
                retry = FIRST_RETRY;
                let mut events = resp.bytes_stream().eventsource();
                loop {
                    let ev = tokio::select! {
                        e = events.next() => e,
                        () = token.cancelled() => return,
                    };
                    let Some(Ok(ev)) = ev else { break };
                    if let Some(m) = face::listened(&ev.data) {
                        inner.deliver(m, None);
                    }
                }
            }
            Ok(resp) => {
                tracing::debug!(service = %inner.service, status = resp.status().as_u16(), "subscriptions/listen refused");
            }
            Err(e) => {
                tracing::debug!(service = %inner.service, "subscriptions/listen failed: {}", super::super::streamable::error_chain(&e));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {},
            () = token.cancelled() => return,
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}
