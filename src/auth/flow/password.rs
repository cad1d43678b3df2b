//! The local sign-in form (`GET /login`) and its answer (`POST /login`): rate
//! limited per address and per account, the same argon2 cost for unknown
//! accounts as for known ones (timing tells nothing), then `sign_in`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::pending::{RequestQuery, check_csrf, load_pending, new_csrf, save_pending};
use super::sign_in::signed_in_now;
use crate::auth::idp::Identity;
use crate::auth::records::PendingAuthorization;
use crate::auth::token::{LoginState, Token};
use crate::auth::{Auth, Login};
use crate::web::{self, escape, hidden};

pub async fn login_page(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<RequestQuery>,
) -> Response {
    let (request, pending) = match load_pending(&auth, &headers, q.request.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    render_login(&auth, &request, pending, None, StatusCode::OK).await
}

async fn render_login(
    auth: &Auth,
    request: &Token<LoginState>,
    mut pending: PendingAuthorization,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    if !matches!(auth.login, Login::Local(_)) {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This gateway signs people in with its identity provider, not a password form.",
        );
    }
    let csrf = new_csrf(&mut pending);
    if let Err(r) = save_pending(auth, request, &pending).await {
        return r;
    }
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    web::page(
        status,
        &format!("Sign in to {}", auth.name),
        &format!(
            "<h1>Sign in to {}</h1>{error}<form method=\"post\" action=\"{}\">{}{}\
             <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"muted\">{} wants to connect to {}.</p>",
            escape(&auth.name),
            escape(&auth.url("/login")),
            hidden("request", request.reveal()),
            hidden("csrf", csrf.reveal()),
            escape(
                pending
                    .client_name
                    .as_deref()
                    .unwrap_or(pending.client_id.as_str())
            ),
            escape(&auth.issuer),
        ),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    request: Option<String>,
    csrf: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

pub async fn login_submit(
    State(auth): State<Arc<Auth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if auth
        .limits
        .login
        .check(&auth.client_key(peer, &headers))
        .is_err()
    {
        return web::error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many sign-in attempts from your address. Wait a minute and try again.",
        );
    }
    let (request, pending) = match load_pending(&auth, &headers, form.request.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&pending, form.csrf.as_deref()) {
        return r;
    }
    let Login::Local(users) = &auth.login else {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No password sign-in here.",
        );
    };
    let email = form.email.unwrap_or_default().trim().to_ascii_lowercase();
    let password = form.password.unwrap_or_default();
    if auth.limits.login_account.check(&email).is_err() {
        return render_login(
            &auth,
            &request,
            pending,
            Some("Too many failed attempts for this account. Wait 15 minutes and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    }
    let user = users.iter().find(|u| u.email == email).cloned();
    // Unknown users cost the same hash as known ones, so timing does not tell
    // which addresses have accounts.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let ok = tokio::task::spawn_blocking(move || crate::util::password::verify(&password, &stored))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(peer = %peer.ip(), "failed password sign-in");
        return render_login(
            &auth,
            &request,
            pending,
            Some("Wrong email or password."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    auth.limits.login_account.reset(&email);
    let identity = Identity {
        provider: "local".into(),
        subject: user.email.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        domain: None,
        groups: user.groups.clone(),
        orgs: Vec::new(),
    };
    signed_in_now(&auth, &request, pending, identity).await
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| crate::util::password::hash("not a real password").unwrap_or_default())
}
