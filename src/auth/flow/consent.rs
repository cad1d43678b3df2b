//! The consent page (`GET /consent`: who wants what, as whom) and its answer
//! (`POST /consent`): approve stores the [`Consent`] and issues the code, deny
//! sends `access_denied` back to the client. The request is single use either way.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::browser::signed_in;
use super::code::issue_code;
use super::pending::{RequestQuery, check_csrf, load_pending, new_csrf, save_pending};
use super::respond::{redirect_error, redirect_host};
use crate::auth::records::{Consent, PendingAuthorization};
use crate::auth::{Audience, Auth};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::util::now_unix;
use crate::web::{self, escape, hidden};

pub async fn consent_page(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<RequestQuery>,
) -> Response {
    let (request, mut pending) = match load_pending(&auth, &headers, q.request.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some((_, session)) = signed_in(&auth, &headers).await else {
        return web::error_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your sign-in has expired. Connect again from your application.",
        );
    };
    let csrf = new_csrf(&mut pending);
    if let Err(r) = save_pending(&auth, &request, &pending).await {
        return r;
    }
    let target = redirect_host(&pending.redirect_uri);
    let services = match &pending.audience {
        Audience::Service(s) => match auth.aggregate_members(s) {
            // An aggregated endpoint: name what is behind it, and that the
            // gateway's policies still decide item by item.
            Some(members) => {
                let names: Vec<String> = members
                    .iter()
                    .map(|m| format!("<code>{}</code>", escape(m)))
                    .collect();
                format!(
                    "the services at <code>{}</code> ({}), as far as this gateway's policies let you use them",
                    escape(&crate::config::endpoint_path(s, "mcp")),
                    names.join(", ")
                )
            }
            None => format!("<code>{}</code>", escape(s)),
        },
        Audience::Gateway => {
            let names: Vec<String> = auth
                .services
                .iter()
                .map(|svc| format!("<code>{}</code>", escape(svc.name.as_str())))
                .collect();
            format!("all services of this gateway ({})", names.join(", "))
        }
    };
    let name = pending
        .client_name
        .as_deref()
        .unwrap_or(pending.client_id.as_str());
    web::page(
        StatusCode::OK,
        "Allow access?",
        &format!(
            "<h1>Allow access?</h1><p><strong>{}</strong> at <strong>{}</strong> wants to use {services} as <strong>{}</strong>.</p>\
             <p class=\"muted\">Scopes: {}. The application's name is its own claim: approve only if you just started this from that application.</p>\
             <form method=\"post\" action=\"{}\">{}{}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
            escape(name),
            escape(&target),
            escape(&session.identity.email),
            escape(&pending.scope.join(" ")),
            escape(&auth.url("/consent")),
            hidden("request", request.reveal()),
            hidden("csrf", csrf.reveal()),
        ),
    )
}

#[derive(Deserialize)]
pub struct ConsentForm {
    request: Option<String>,
    csrf: Option<String>,
    decision: Option<String>,
}

pub async fn consent_submit(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let (request, pending) = match load_pending(&auth, &headers, form.request.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&pending, form.csrf.as_deref()) {
        return r;
    }
    let Some((_, session)) = signed_in(&auth, &headers).await else {
        return web::error_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your sign-in has expired. Connect again from your application.",
        );
    };
    // Single use: whichever way the decision goes, this request is done.
    let _ = auth
        .store
        .delete::<PendingAuthorization>(&request.hash().to_hex())
        .await;
    if form.decision.as_deref() != Some("approve") {
        return redirect_error(
            &auth.issuer,
            &pending.redirect_uri,
            pending.state.as_deref(),
            OAuthError::new(ErrorCode::AccessDenied, "the user denied access"),
        );
    }
    let consent = Consent {
        user: session.user.clone(),
        client_id: pending.client_id.clone(),
        client_name: pending.client_name.clone(),
        scope: pending.scope.clone(),
        audience: pending.audience.clone(),
        granted_at: now_unix(),
    };
    if let Err(e) = auth
        .store
        .put(
            &Consent::key(&session.user, &pending.client_id),
            &consent,
            None,
        )
        .await
    {
        tracing::error!("cannot store a consent: {e}");
    }
    issue_code(&auth, &pending, &session).await
}
