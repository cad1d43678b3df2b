//! The signed-in person's own pages (behind the gateway's sign-in cookie, not an
//! OAuth token):
//!
//! - `/my/tokens`: their token for each service that needs one: set, replace,
//!   remove (never shown back in full), or Connect/Disconnect for services with
//!   upstream OAuth (`upstream`).
//! - `/my/consents`: the clients they allowed, each revocable. Revoking a consent
//!   also revokes every token that client holds for this person, and the client
//!   must ask again next time.
//!
//! Every form carries a CSRF value whose hash the browser session holds.

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
use super::{Auth, FamilyId};
use crate::caller::ClientId;
use crate::util::secure_eq;
use crate::web::{self, escape, hidden};

pub async fn consents_page(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    let Some((browser, session)) = session_of(&auth, &headers).await else {
        return found(&auth.url("/my/login?next=/my/consents"));
    };
    let (session, csrf) = match new_form_csrf(&auth, &browser, session).await {
        Ok(x) => x,
        Err(r) => return r,
    };
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
    let session = match form_session(&auth, &headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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

/// A fresh CSRF value for the forms of a page, its hash kept in the session.
pub async fn new_form_csrf(
    auth: &Auth,
    browser: &str,
    mut session: BrowserSession,
) -> Result<(BrowserSession, Token<Csrf>), Response> {
    let csrf = Token::<Csrf>::generate();
    session.csrf = Some(csrf.hash().to_hex());
    let expires = SystemTime::now() + auth.settings.login_ttl;
    match auth.store.put(browser, &session, Some(expires)).await {
        Ok(()) => Ok((session, csrf)),
        Err(_) => Err(web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The gateway's store is unavailable; try again shortly.",
        )),
    }
}

/// The signed-in session behind a form post, if its CSRF value is right.
pub async fn form_session(
    auth: &Auth,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<BrowserSession, Response> {
    let Some((_, session)) = session_of(auth, headers).await else {
        return Err(web::error_page(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Your sign-in at this gateway has expired. Open the page again to sign in.",
        ));
    };
    let ok = match (
        &session.csrf,
        csrf.and_then(|c| Token::<Csrf>::parse(c).ok()),
    ) {
        (Some(expected), Some(given)) => secure_eq(expected, &given.hash().to_hex()),
        _ => false,
    };
    if ok {
        Ok(session)
    } else {
        // Only a browser signed in as this person gets here: no flood to fear.
        tracing::warn!(
            target: "audit",
            user = session.user.as_str(),
            "a /my form's CSRF value was refused"
        );
        Err(web::error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is out of date or did not come from this gateway (CSRF check failed). Reload the page and try again.",
        ))
    }
}

// ---- /my/tokens ---------------------------------------------------------------

#[derive(Deserialize)]
pub struct TokensQuery {
    saved: Option<String>,
    removed: Option<String>,
    error: Option<String>,
}

pub async fn tokens_page(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<TokensQuery>,
) -> Response {
    let Some((browser, session)) = session_of(&auth, &headers).await else {
        return found(&auth.url("/my/login?next=/my/tokens"));
    };
    let (session, csrf) = match new_form_csrf(&auth, &browser, session).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut notice = String::new();
    if let Some(s) = q.saved.as_deref().and_then(|s| auth.service(s)) {
        notice = format!(
            "<p><strong>Saved your token for {}.</strong> Open sessions pick it up at once.</p>",
            escape(s.display_name())
        );
    }
    if let Some(s) = q.removed.as_deref().and_then(|s| auth.service(s)) {
        notice = format!(
            "<p><strong>Removed your token for {}.</strong></p>",
            escape(s.display_name())
        );
    }
    if let Some(e) = q.error.as_deref().and_then(|id| auth.take_flash(id)) {
        notice = format!(
            "<p class=\"error\">{}</p>",
            escape(&e.chars().take(300).collect::<String>())
        );
    }
    let mut items = Vec::new();
    for svc in auth.services_needing_tokens() {
        let name = svc.name.as_str();
        let record = auth
            .user_token_record(&session.user, name)
            .await
            .ok()
            .flatten();
        let status = match &record {
            Some(r) if r.hint.is_empty() => "set".to_string(),
            Some(r) => format!("set (ends in <code>…{}</code>)", escape(&r.hint)),
            None => "<strong>not set</strong>: this service cannot be used until you set it".into(),
        };
        let action = |path: &str| escape(&auth.url(&format!("/my/tokens/{name}{path}")));
        let mut body = format!(
            "<h2>{}</h2><p>Status: {status}</p>",
            escape(svc.display_name())
        );
        match &svc.user_auth {
            Some(crate::config::UserAuthConfig::Oauth { .. }) => {
                if record.is_some() {
                    body.push_str(&format!(
                        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"secondary\">Disconnect</button></form>",
                        action("/disconnect"),
                        hidden("csrf", csrf.reveal())
                    ));
                } else {
                    body.push_str(&format!(
                        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\">Connect {}</button></form>",
                        action("/connect"),
                        hidden("csrf", csrf.reveal()),
                        escape(svc.display_name())
                    ));
                }
            }
            other => {
                if let Some(crate::config::UserAuthConfig::Manual {
                    instructions,
                    help_url,
                    ..
                }) = other
                {
                    if let Some(i) = instructions {
                        body.push_str(&format!("<p>{}</p>", escape(i)));
                    }
                    if let Some(h) = help_url
                        .as_deref()
                        .filter(|h| h.starts_with("https://") || h.starts_with("http://"))
                    {
                        body.push_str(&format!("<p><a href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">How to get a token</a></p>", escape(h)));
                    }
                }
                body.push_str(&format!(
                    "<form method=\"post\" action=\"{}\">{}<label for=\"t-{name}\">{} token</label>\
                     <input id=\"t-{name}\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
                     <button type=\"submit\">{}</button></form>",
                    action(""),
                    hidden("csrf", csrf.reveal()),
                    escape(svc.display_name()),
                    if record.is_some() { "Replace" } else { "Save" }
                ));
                if record.is_some() {
                    body.push_str(&format!(
                        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"secondary\">Remove</button></form>",
                        action("/delete"),
                        hidden("csrf", csrf.reveal())
                    ));
                }
            }
        }
        items.push(format!("<section>{body}</section>"));
    }
    if items.is_empty() {
        items.push("<p>No service on this gateway needs a token of your own.</p>".into());
    }
    web::page(
        StatusCode::OK,
        "Your tokens",
        &format!(
            "<h1>Your tokens</h1><p class=\"muted\">Signed in as {}. Tokens are stored encrypted and never shown again.</p>{notice}{}",
            escape(&session.identity.email),
            items.join("")
        ),
    )
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf: Option<String>,
    token: Option<String>,
}

pub async fn save_token(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    axum::extract::Path(service): axum::extract::Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let session = match form_session(&auth, &headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(svc) = auth.service(&service).filter(|s| s.needs_user_token()) else {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Unknown service",
            "No service of this name takes a token.",
        );
    };
    let back = |q: String| found(&auth.url(&format!("/my/tokens?{q}")));
    let value = form.token.unwrap_or_default().trim().to_string();
    if value.is_empty() || value.len() > 8192 || value.chars().any(char::is_control) {
        return back(format!(
            "error={}",
            auth.flash("The token is empty, too long, or has control characters.")
        ));
    }
    if let Some(crate::config::UserAuthConfig::Manual {
        validation: Some(pattern),
        ..
    }) = &svc.user_auth
        && !regex_lite::Regex::new(pattern).is_ok_and(|re| re.is_match(&value))
    {
        return back(format!(
            "error={}",
            auth.flash(&format!(
                "That does not look like a {} token (it must match {pattern}).",
                svc.display_name()
            ))
        ));
    }
    if let Err(e) = auth.set_user_token(&session.user, &service, &value).await {
        tracing::error!(service = service.as_str(), "cannot store a user token: {e}");
        return back(format!(
            "error={}",
            auth.flash("The token could not be stored; try again shortly.")
        ));
    }
    tracing::info!(
        user = session.user.as_str(),
        service = service.as_str(),
        "user token set"
    );
    auth.user_token_changed(&session.user, &service);
    back(format!("saved={service}"))
}

pub async fn delete_token(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    axum::extract::Path(service): axum::extract::Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let session = match form_session(&auth, &headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _ = auth.delete_user_token(&session.user, &service).await;
    tracing::info!(
        user = session.user.as_str(),
        service = service.as_str(),
        "user token removed"
    );
    found(&auth.url(&format!("/my/tokens?removed={}", urlencode(&service))))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
