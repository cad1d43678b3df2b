//! What sits between one client and its backends, chosen in one function
//! ([`Routes::connect`]).
//!
//! A client (a session, or later a stateless request) hands its messages to a
//! [`Route`]; the route hands them to one or more [`Backend`]s, each a plain
//! transport to one MCP server. In the order a request meets them:
//!
//! 1. **Aggregated endpoint** (`/mcp`, `/<group>/mcp`): many services as one,
//!    names prefixed, lists merged ([`aggregate`]).
//! 2. **Governed service** (a `toolFilter`, or named by `policies`): the same
//!    machinery over one member, names unchanged: items the caller may not use
//!    are hidden from lists and refused on use.
//! 3. **Deferred** ([`deferred`]): the service needs the person's own token and
//!    they have none yet; the gateway explains where to set it and starts the
//!    backend when it is saved.
//! 4. **Shared** ([`shared`]): `"shared": true`, one backend per person for all
//!    their sessions.
//! 5. **Direct**: the session's own backend.
//!
//! Steps 1-2 authorize items; 3-5 choose how one service's backend is reached.
//! Members of an aggregate are connected by steps 3-5 ([`Routes::member`]).

pub mod aggregate;
pub mod deferred;
pub mod shared;
pub mod values;

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, InboxRef};
use crate::caller::{Caller, PersonalToken};
use crate::config::{BackendSpec, ServiceName, Settings};
use crate::jsonrpc::Message;
use crate::policy::Policy;
use crate::service::{Kind, Service};
use aggregate::Aggregate;
use aggregate::catalog::Catalogs;
use deferred::Deferred;
use values::{Person, ValuesError};

/// One client's way to a service's backends.
pub enum Route {
    /// The session's own backend (boxed: the other variants are pointers).
    Direct(Box<Backend>),
    /// Waiting for the person's token.
    Deferred(Arc<Deferred>),
    /// One session's share of a person's shared backend.
    Shared(Arc<shared::Member>),
    /// Several services as one, or one service under policy.
    Aggregate(Arc<Aggregate>),
}

/// A route, and when the personal token its backend started with expires
/// (the session ends shortly before, so an expired token is never sent).
pub struct Connected {
    pub route: Route,
    pub token_expires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Values(#[from] ValuesError),
    #[error("could not read your token for {service}: {reason}")]
    Token { service: String, reason: String },
    #[error("{0} is an aggregated endpoint, not a server")]
    NotAServer(ServiceName),
}

/// A 2026-07-28 server a 2026-07-28 request is forwarded to as it is.
pub struct Passthrough {
    pub url: url::Url,
    /// The service's headers, the person's values filled in.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// What every route shares: the rules, the discovery cache, the naming of
/// aggregated items, and each shared service's backends.
pub struct Routes {
    pub policy: Policy,
    pub catalogs: Catalogs,
    pub delimiter: String,
    pub page_size: usize,
    pools: HashMap<ServiceName, shared::Pool>,
}

impl Routes {
    pub fn new(settings: &Settings) -> Arc<Routes> {
        Arc::new(Routes {
            policy: settings.policy.clone(),
            catalogs: Catalogs::new(settings.aggregate.cache_ttl),
            delimiter: settings.aggregate.delimiter.clone(),
            page_size: settings.aggregate.page_size,
            pools: settings
                .services
                .iter()
                .filter(|s| s.shared)
                .map(|s| (s.name.clone(), shared::Pool::default()))
                .collect(),
        })
    }

    /// Whether `policies` or a `toolFilter` restrict this service.
    pub fn governs(&self, service: &Service) -> bool {
        self.policy.governs(service.name.as_str())
    }

    /// Connect one client of `service` to its backends: the one place where
    /// what sits between them is chosen (see the module's list).
    pub async fn connect(
        self: &Arc<Self>,
        service: &Arc<Service>,
        caller: Option<&Arc<Caller>>,
        inbox: InboxRef,
    ) -> Result<Connected, RouteError> {
        // 1. Many services as one: members connect on first use.
        if let Kind::Aggregate(members) = &service.kind {
            let a = Aggregate::new(service, members.clone(), true, self, inbox, caller);
            return Ok(Connected {
                route: Route::Aggregate(a),
                token_expires_at: None,
            });
        }
        // 2. One service under policy: the same layer, names unchanged.
        if self.governs(service) {
            let a = Aggregate::new(service, vec![service.clone()], false, self, inbox, caller);
            return Ok(Connected {
                route: Route::Aggregate(a),
                token_expires_at: None,
            });
        }
        // 3-5. The service itself.
        let token = self.token_for(service, caller).await?;
        let expires = token.as_ref().and_then(|t| t.expires_at);
        let route = self.member(service, caller, token, inbox).await?;
        Ok(Connected {
            route,
            token_expires_at: expires,
        })
    }

    /// Where a 2026-07-28 request may go as it is: a service that is one
    /// streamable HTTP server speaking 2026-07-28, not under policy, with the
    /// person's values (and token) filled into its URL and headers. `None`
    /// when the request must be bridged (any other backend, a governed
    /// service, a person whose token for it is not set yet).
    pub async fn passthrough(
        &self,
        service: &Service,
        caller: Option<&Arc<Caller>>,
    ) -> Result<Option<Passthrough>, RouteError> {
        let Kind::Server(spec) = &service.kind else {
            return Ok(None);
        };
        if !matches!(spec, BackendSpec::StreamableHttp { .. })
            || self.governs(service)
            || crate::backend::known_session_era(service)
        {
            return Ok(None);
        }
        let token = self.token_for(service, caller).await?;
        if caller.is_some() && service.needs_user_token && token.is_none() {
            return Ok(None);
        }
        let person = caller.map(|c| Person {
            caller: c,
            token: token.as_ref(),
        });
        let BackendSpec::StreamableHttp { url, headers } =
            values::render_spec(spec, person.as_ref())?
        else {
            return Ok(None);
        };
        if !crate::backend::speaks_2026(service, &url, &headers).await {
            return Ok(None);
        }
        Ok(Some(Passthrough { url, headers }))
    }

    /// The caller's token for this service, when it needs one.
    pub async fn token_for(
        &self,
        service: &Service,
        caller: Option<&Arc<Caller>>,
    ) -> Result<Option<PersonalToken>, RouteError> {
        match caller {
            Some(c) if service.needs_user_token => c
                .token_for(service.name.as_str())
                .await
                .map_err(|e| RouteError::Token {
                    service: service.name.to_string(),
                    reason: e.to_string(),
                }),
            _ => Ok(None),
        }
    }

    /// One service's backend as it is (no policy): deferred until the
    /// person's token is set, shared between their sessions, or their own.
    pub async fn member(
        self: &Arc<Self>,
        service: &Arc<Service>,
        caller: Option<&Arc<Caller>>,
        token: Option<PersonalToken>,
        inbox: InboxRef,
    ) -> Result<Route, RouteError> {
        // 3. Waiting for the person's token.
        if let Some(c) = caller
            && service.needs_user_token
            && token.is_none()
        {
            return Ok(Route::Deferred(Deferred::new(
                service,
                self,
                inbox,
                c.clone(),
            )));
        }
        self.own(service, caller, token.as_ref(), inbox).await
    }

    /// The service's backend with the person's values: shared (4) or direct (5).
    pub async fn own(
        &self,
        service: &Arc<Service>,
        caller: Option<&Arc<Caller>>,
        token: Option<&PersonalToken>,
        inbox: InboxRef,
    ) -> Result<Route, RouteError> {
        let Kind::Server(spec) = &service.kind else {
            return Err(RouteError::NotAServer(service.name.clone()));
        };
        let person = caller.map(|c| Person { caller: c, token });
        let spec = values::render_spec(spec, person.as_ref())?;
        // 4. Shared by the person's sessions. Keyed by person and token: after
        // a token changes, new sessions get a process with the new one (the
        // old process ends with its sessions).
        if let Some(pool) = self.pools.get(&service.name) {
            let key = caller.map(|c| {
                (
                    c.user.clone(),
                    token.map(|t| crate::util::sha256_hex(t.value.as_bytes())),
                )
            });
            return Ok(Route::Shared(pool.join(service, key, &spec, inbox).await?));
        }
        // 5. Its own.
        Ok(Route::Direct(Box::new(
            Backend::start(service, &spec, inbox).await?,
        )))
    }
}

impl Route {
    /// Send one message towards the server(s). Errors are reported to the
    /// inbox as JSON-RPC errors for the request concerned.
    pub async fn send(&self, msg: Message) -> Result<(), BackendError> {
        match self {
            Route::Direct(b) => b.send(msg).await,
            Route::Deferred(d) => d.send(msg).await,
            Route::Shared(m) => m.send(msg).await,
            Route::Aggregate(a) => a.send(msg).await,
        }
    }

    /// The client now has a stream for server-initiated messages.
    pub fn client_listens(&self) {
        match self {
            Route::Direct(b) => b.client_listens(),
            Route::Deferred(d) => {
                if let Some(real) = d.real() {
                    real.client_listens();
                }
            }
            Route::Shared(m) => m.client_listens(),
            Route::Aggregate(a) => a.client_listens(),
        }
    }

    /// How many processes of its own it runs (for `/ready`).
    pub fn process_count(&self) -> usize {
        match self {
            Route::Direct(b) => usize::from(b.is_process()),
            Route::Deferred(d) => d.real().map_or(0, Route::process_count),
            Route::Shared(_) => 0,
            Route::Aggregate(a) => a.process_count(),
        }
    }

    /// End it: stop the process group, end the remote session, or leave the
    /// shared backend.
    pub async fn close(&self) {
        match self {
            Route::Direct(b) => b.close().await,
            Route::Deferred(d) => d.close().await,
            Route::Shared(m) => m.close().await,
            Route::Aggregate(a) => a.close().await,
        }
    }
}
