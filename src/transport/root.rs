//! `/mcp`, `/sse` and `/message`: the root aggregated endpoint, served by the
//! same handlers as every service, under its internal name `mcp`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{MethodRouter, get};

use super::{sse, streamable};
use crate::auth::Principal;
use crate::config::AggregateSettings;
use crate::gateway::Gateway;

fn root() -> Path<String> {
    Path(AggregateSettings::ROOT.to_string())
}

pub fn streamable() -> MethodRouter<Arc<Gateway>> {
    get(
        |gw: State<Arc<Gateway>>, p: Option<Extension<Principal>>, h: HeaderMap| async move {
            streamable::get(gw, root(), p, h).await
        },
    )
    .post(
        |gw: State<Arc<Gateway>>,
         p: Option<Extension<Principal>>,
         h: HeaderMap,
         body: Body| async move { streamable::post(gw, root(), p, h, body).await },
    )
    .delete(
        |gw: State<Arc<Gateway>>, p: Option<Extension<Principal>>, h: HeaderMap| async move {
            streamable::delete(gw, root(), p, h).await
        },
    )
}

pub async fn sse(gw: State<Arc<Gateway>>, p: Option<Extension<Principal>>) -> Response {
    sse::connect(gw, root(), p).await
}

pub async fn message(
    gw: State<Arc<Gateway>>,
    p: Option<Extension<Principal>>,
    q: Query<sse::MessageQuery>,
    h: HeaderMap,
    body: Body,
) -> Response {
    sse::message(gw, root(), p, q, h, body).await
}
