//! `/my/consents`: the signed-in person's consents, each revocable. Revoking a
//! consent also revokes every token that client holds for this person, and the
//! client must ask again next time.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::flow::{found, signed_in};
use super::records::{BrowserSession, Consent, Family};
use super::token::{Csrf, Token};
use super::{Auth, ClientId, FamilyId, secure_eq};
use crate::web::{self, escape, hidden};

pub async fn consents_page(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    let Some((browser, mut session)) = session_of(&auth, &headers).await else {
        return not_signed_in();
    };
    let csrf = Token::<Csrf>::generate();
    session.csrf = Some(csrf.hash().to_hex());
    let expires = SystemTime::now() + auth.settings.login_ttl;
    if auth
        .store
        .put(&browser, &session, Some(expires))
        .await
        .is_err()
    {
        return web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The gateway's store is unavailable; try again shortly.",
        );
    }
    let consents: Vec<Consent> = auth
        .store
        .list::<Consent>()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c.user == session.user)
        .collect();
    let rows: String = if consents.is_empty() {
        "<p>You have not allowed any application yet.</p>".into()
    } else {
        let items: Vec<String> = consents
            .iter()
            .map(|c| {
                format!(
                    "<li><strong>{}</strong> <span class=\"muted\">({}; scopes {})</span>\
                     <form method=\"post\" action=\"{}\">{}{}<button type=\"submit\" class=\"secondary\">Revoke</button></form></li>",
                    escape(c.client_name.as_deref().unwrap_or(c.client_id.as_str())),
                    escape(c.client_id.as_str()),
                    escape(&c.scope.join(" ")),
                    escape(&auth.url("/my/consents/revoke")),
                    hidden("client_id", c.client_id.as_str()),
                    hidden("csrf", csrf.reveal()),
                )
            })
            .collect();
        format!("<ul>{}</ul>", items.join(""))
    };
    web::page(
        StatusCode::OK,
        "Applications",
        &format!(
            "<h1>Applications you allowed</h1><p class=\"muted\">Signed in as {}.</p>{rows}",
            escape(&session.identity.email)
        ),
    )
}

#[derive(Deserialize)]
pub struct RevokeForm {
    client_id: Option<String>,
    csrf: Option<String>,
}

pub async fn revoke_consent(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let Some((_, session)) = session_of(&auth, &headers).await else {
        return not_signed_in();
    };
    let csrf_ok = match (
        &session.csrf,
        form.csrf
            .as_deref()
            .and_then(|c| Token::<Csrf>::parse(c).ok()),
    ) {
        (Some(expected), Some(given)) => secure_eq(expected, &given.hash().to_hex()),
        _ => false,
    };
    if !csrf_ok {
        return web::error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is out of date or did not come from this gateway (CSRF check failed). Reload the page and try again.",
        );
    }
    let Some(client) = form.client_id.map(ClientId::new) else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Nothing to revoke",
            "No application was named.",
        );
    };
    let _ = auth
        .store
        .delete::<Consent>(&Consent::key(&session.user, &client))
        .await;
    let families: Vec<FamilyId> = auth
        .store
        .list::<Family>()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, f)| f.user == session.user && f.client_id == client && f.revoked_at.is_none())
        .map(|(k, _)| FamilyId::new(k))
        .collect();
    for f in &families {
        auth.revoke_family(f, "consent revoked by the user").await;
    }
    tracing::info!(
        user = session.user.as_str(),
        client_id = client.as_str(),
        tokens = families.len(),
        "consent revoked"
    );
    found(&auth.url("/my/consents"))
}

async fn session_of(auth: &Auth, headers: &HeaderMap) -> Option<(String, BrowserSession)> {
    signed_in(auth, headers).await
}

fn not_signed_in() -> Response {
    web::error_page(
        StatusCode::UNAUTHORIZED,
        "Not signed in",
        "You are not signed in at this gateway in this browser. Connect an application (which signs you in), then come back.",
    )
}
