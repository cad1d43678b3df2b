//! MCP 2026-07-28 clients: stateless requests, each carrying its protocol
//! version and client capabilities, served on the same URLs as the session
//! era (`transport::streamable` decides per request).
//!
//! This is the second kind of client beside `session`, on the same layer of
//! the request's life: a request is checked (`request`), then carried out on a
//! backend session the gateway keeps for the person (`pool`), which is an
//! ordinary [`Session`](crate::session::Session) with its route, policy,
//! audit and personal tokens. What the session-era backend says is reshaped
//! for the modern client (`shape`); what it asks its client mid-call becomes
//! an `input_required` result and a held call (`rounds`, `call`); the
//! notifications that belong to no request reach `subscriptions/listen`
//! (`listen`).

mod call;
mod listen;
mod pool;
pub mod request;
mod rounds;
mod shape;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub use call::{Call, Ctx, Frame};
pub use pool::{Kept, Key, PoolError};
pub use request::{Modern, Refusal};
pub use rounds::StateError;

use crate::jsonrpc::{self, RequestId, code};
use crate::session::Session;

/// Everything the gateway keeps for 2026-07-28 clients.
#[derive(Default)]
pub struct Bridge {
    pool: pool::Pool,
    rounds: Arc<rounds::Rounds>,
}

impl Bridge {
    /// Calls waiting for a client's retry with its answers.
    pub fn held(&self) -> usize {
        self.rounds.count()
    }

    /// Backend sessions kept for 2026-07-28 clients.
    pub fn kept(&self) -> usize {
        self.pool.len()
    }

    pub fn ctx(&self, user: Option<crate::caller::UserId>, service: &str, private: bool) -> Ctx {
        Ctx {
            rounds: self.rounds.clone(),
            user,
            service: service.to_string(),
            scope: if private { "private" } else { "public" },
        }
    }

    /// The person's kept backend session for this service and capability set.
    pub async fn session<F, Fut, E>(
        &self,
        key: Key,
        req: &Modern,
        open: F,
    ) -> Result<Arc<Kept>, PoolError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Session>, E>>,
    {
        self.pool.get(key, req, open).await
    }

    /// A retry: the held call its `requestState` names, with the answers given.
    pub async fn resume(&self, req: &Modern, state: &str, ctx: Ctx) -> Result<Call, StateError> {
        let id = req.id.clone().unwrap_or_else(|| jsonrpc::string_id(""));
        let digest = call::digest(req);
        let bind = rounds::Binding {
            user: ctx.user.as_ref(),
            service: &ctx.service,
            method: &req.method,
            digest: &digest,
        };
        let held = self.rounds.take(state, &bind)?;
        Ok(Call::resume(held, req, id, ctx).await)
    }

    /// A new request on a kept session.
    pub async fn call(&self, kept: Arc<Kept>, req: &Modern, ctx: Ctx) -> Result<Call, Bytes> {
        let id = req.id.clone().unwrap_or_else(|| jsonrpc::string_id(""));
        if let Some(level) = &req.log_level {
            kept.log_level(level).await;
        }
        let internal = kept.next_id();
        let Some(msg) = pool::backend_request(&internal, req) else {
            return Err(error(
                &id,
                code::INTERNAL_ERROR,
                "the request could not be rebuilt",
            ));
        };
        match kept.session.submit(vec![msg]).await {
            Ok(Some(rx)) => Ok(Call::new(kept, rx, internal, id, req, ctx)),
            _ => Err(error(
                &id,
                code::BACKEND_UNAVAILABLE,
                "the backend session ended; send the request again",
            )),
        }
    }

    /// `server/discover`, answered from the backend's `initialize`.
    pub fn discover(&self, kept: &Kept, id: &RequestId, ctx: &Ctx) -> Bytes {
        let result = shape::discover(&kept.init, ctx.scope);
        jsonrpc::result_response(id, &result).raw
    }

    /// `subscriptions/listen`: its SSE events, first the acknowledgement.
    pub async fn listen(
        &self,
        kept: Arc<Kept>,
        req: &Modern,
        id: RequestId,
    ) -> Option<impl Stream<Item = Bytes> + use<>> {
        listen::listen(kept, req, id).await
    }
}

fn error(id: &RequestId, code: i64, message: &str) -> Bytes {
    jsonrpc::error_response(Some(id), code, message, None).raw
}
