//! The running gateway: services, sessions, and the background work that keeps
//! them tidy (timeouts, idle sessions, orphaned processes), plus startup and
//! graceful shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::backend::process;
use crate::config::Settings;
use crate::route::Routes;
use crate::service::Service;
use crate::session::Registry;
use crate::transport::{AppState, OriginPolicy};

/// The gateway: the handlers' shared state, and what runs beside them.
pub struct Gateway {
    pub state: Arc<AppState>,
}

impl std::ops::Deref for Gateway {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.state
    }
}

impl Gateway {
    pub fn new(settings: Settings, auth: Option<Arc<Auth>>) -> anyhow::Result<Arc<Gateway>> {
        let mut services = HashMap::new();
        for s in &settings.services {
            services.insert(
                s.name.clone(),
                Arc::new(Service::new(s, settings.shutdown_grace)?),
            );
        }
        for (name, members) in &settings.aggregate.endpoints {
            let members: Vec<Arc<Service>> = members
                .iter()
                .filter_map(|m| services.get(m).cloned())
                .collect();
            let aggregate = Service::aggregate(name.clone(), members, settings.shutdown_grace)?;
            services.insert(name.clone(), Arc::new(aggregate));
        }
        Ok(Arc::new(Gateway {
            state: Arc::new(AppState {
                origins: OriginPolicy::new(&settings),
                routes: Routes::new(&settings),
                settings,
                services,
                sessions: Arc::new(Registry::default()),
                shutdown: CancellationToken::new(),
                auth,
                bridge: Default::default(),
            }),
        }))
    }

    /// When a person sets their token for a service, their sessions that were
    /// waiting for it start their backend (no reconnect needed).
    fn spawn_token_watch(self: &Arc<Self>) {
        let Some(auth) = self.auth.clone() else {
            return;
        };
        let gw = self.clone();
        let mut changes = auth.token_changes();
        tokio::spawn(async move {
            loop {
                let (user, service) = tokio::select! {
                    c = changes.recv() => match c {
                        Ok(c) => c,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    () = gw.shutdown.cancelled() => return,
                };
                // What the service offers this person may change with the token.
                if let Some(svc) = gw.service(&service) {
                    gw.routes
                        .catalogs
                        .invalidate(&(svc.name.clone(), Some(user.clone())));
                }
                let (mine, aggregates): (Vec<_>, Vec<_>) = gw
                    .sessions
                    .all()
                    .into_iter()
                    .filter(|s| s.owner.as_ref() == Some(&user))
                    .filter_map(|s| match s.aggregate() {
                        Some(a) if a.has_member(&service) => Some((None, Some(a))),
                        _ if s.service.name.as_str() == service => Some((Some(s), None)),
                        _ => None,
                    })
                    .unzip();
                // Aggregated and governed sessions restart that member on next use.
                for a in aggregates.into_iter().flatten() {
                    let service = service.clone();
                    tokio::spawn(async move { a.token_changed(&service).await });
                }
                let mine: Vec<_> = mine.into_iter().flatten().collect();
                let mut waiting = Vec::new();
                for s in mine {
                    match s.deferred() {
                        Some(d) => waiting.push(d),
                        // Running with the old token (replaced or removed): end
                        // it; the client re-initializes and gets the new one.
                        None => {
                            tokio::spawn(async move {
                                s.close("the person's token for this service changed").await
                            });
                        }
                    }
                }
                if waiting.is_empty() {
                    continue;
                }
                let token =
                    match crate::caller::PersonalTokens::token(&*auth, &user, &service).await {
                        Ok(Some(t)) => t,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(service, "cannot read a token just set: {e}");
                            continue;
                        }
                    };
                for d in waiting {
                    let token = token.clone();
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(e) = d.activate(token).await {
                            tracing::warn!(
                                service,
                                "could not start the backend after the token was set: {e}"
                            );
                        }
                    });
                }
            }
        });
    }

    /// Timeouts, idle sessions and orphan reaping, every quarter second.
    fn spawn_housekeeping(self: &Arc<Self>) {
        let gw = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sigchld =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Some(()) = async { match sigchld.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                        process::reap_orphans();
                        continue;
                    }
                    () = gw.shutdown.cancelled() => return,
                }
                let now = Instant::now();
                for session in gw.sessions.all() {
                    if let Some(reason) = session.sweep(now).await {
                        tokio::spawn(async move { session.close(reason).await });
                    }
                }
                process::reap_orphans();
            }
        });
    }

    /// Close every session (and so every backend process), in parallel.
    pub async fn close_all_sessions(&self, reason: &str) {
        let closes = self.sessions.all().into_iter().map(|s| {
            let reason = reason.to_string();
            tokio::spawn(async move { s.close(&reason).await })
        });
        for c in closes {
            let _ = c.await;
        }
        process::reap_orphans();
    }
}

/// Bind, serve until SIGINT/SIGTERM (or `gw.shutdown`), then shut down cleanly.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) -> anyhow::Result<()> {
    process::become_subreaper();
    gw.spawn_housekeeping();
    gw.spawn_token_watch();
    let app = crate::transport::router(gw.state.clone());

    let signal_gw = gw.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; closing sessions");
        signal_gw.shutdown.cancel();
    });

    let shutdown = gw.shutdown.clone();
    // Answers and SSE events are small writes: without TCP_NODELAY, Nagle's
    // algorithm holds each one back until the client's delayed ACK (~40 ms).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await });
    let server = tokio::spawn(async move { server.await });

    gw.shutdown.cancelled().await;
    // Ending the sessions ends their SSE streams, which lets connections drain.
    gw.close_all_sessions("the gateway is shutting down").await;
    let drain = gw.settings.shutdown_grace + Duration::from_secs(2);
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("server error during shutdown: {e}"),
        Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
        Err(_) => tracing::warn!("some connections were still open after {drain:?}; closing them"),
    }
    process::reap_orphans();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
