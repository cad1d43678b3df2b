//! `/health` (liveness) and `/ready` (per-service state).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;

pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn ready(State(gw): State<Arc<AppState>>) -> Response {
    let mut services = Map::new();
    let mut names: Vec<_> = gw.services.keys().collect();
    names.sort();
    for name in names {
        let Some(s) = gw.services.get(name) else {
            continue;
        };
        let last_error = s.stats.last_error().map(|(at, message)| {
            json!({ "at": humantime::format_rfc3339_seconds(at).to_string(), "message": message })
        });
        services.insert(
            name.to_string(),
            json!({
                "transport": s.transport(),
                "sessions": s.stats.sessions.load(Ordering::Relaxed),
                "sessionsTotal": s.stats.sessions_total.load(Ordering::Relaxed),
                "processes": s.stats.processes.load(Ordering::Relaxed),
                "maxSessions": s.limits.max_sessions,
                "lastError": last_error.unwrap_or(Value::Null),
            }),
        );
    }
    let shutting_down = gw.shutdown.is_cancelled();
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "status": if shutting_down { "shutting_down" } else { "ready" },
            "services": services,
            // MCP 2026-07-28 clients: backend sessions kept for them (also
            // counted in their services' `sessions`) and calls waiting for a
            // retry with the client's answers.
            "stateless": {"keptSessions": gw.bridge.kept(), "heldCalls": gw.bridge.held()},
        })),
    )
        .into_response()
}
