//! The browser side of an authorization: `/authorize` -> sign-in -> consent ->
//! 302 back to the client with a code.
//!
//! The request is validated in two stages (RFC 6749 §4.1.2.1): until the client
//! and its redirect URI are known good, errors are shown as a page (redirecting
//! to an unchecked URI would make the gateway an open redirector); after that,
//! errors go back to the client on its redirect URI.
//!
//! A request in progress is a [`PendingAuthorization`] in the store, named by a
//! `Token<LoginState>` carried in URLs and bound to the browser that started it
//! (its cookie's hash), so a request link sent to someone else is useless. Every
//! form carries a CSRF value whose hash the request holds; both must match.

// Handlers return early with a ready page as their error: boxing it would only
// add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use url::Url;

use super::idp::Identity;
use super::records::{BrowserSession, CodeGrant, Consent, PendingAuthorization};
use super::token::{AuthorizationCode, Browser, Csrf, LoginState, Token};
use super::{Audience, Auth, FamilyId, Login};
use crate::caller::UserId;
use crate::config::auth::AccessPolicy;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::redirect::{self, Outcome};
use crate::util::{now_unix, secure_eq};
use crate::web::{self, escape, hidden};

/// How long a person has to sign in and consent.
const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);
/// Authorization codes are single use and short-lived (RFC 6749 §4.1.2: at most 10 min).
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// Ties requests in progress to the browser that started them. Never replaced
/// at sign-in, so two sign-ins in flight in one browser do not break each other.
const BROWSER_COOKIE: &str = "mcpgate-browser";
/// The signed-in session; always a new value at sign-in (no session fixation).
const SESSION_COOKIE: &str = "mcpgate-session";

#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    prompt: Option<String>,
}

pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    query: Result<Query<AuthorizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                &format!(
                    "The application sent a malformed request ({e}). Try connecting again; if it keeps happening, report it to the application's developers."
                ),
            );
        }
    };
    // Stage 1: client and redirect URI, errors shown here.
    let Some(client_id) = q.client_id.as_deref() else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            "The request has no client_id.",
        );
    };
    let client = match auth.client(client_id).await {
        Ok(c) => c,
        Err(e) => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                &format!(
                    "This gateway does not know the application that sent you here: {}",
                    e.description
                ),
            );
        }
    };
    let redirect_uri = match q.redirect_uri.as_deref() {
        Some(r) if redirect::find(&client.redirect_uris, r).is_some() => r.to_string(),
        Some(_) => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Invalid redirect URI",
                "The application asked to return to an address it did not register. For your safety the sign-in stops here.",
            );
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].to_string(),
        None => {
            return web::error_page(
                StatusCode::BAD_REQUEST,
                "Invalid authorization request",
                "The request has no redirect_uri and the application registered several.",
            );
        }
    };
    // Stage 2: errors go back to the client.
    let state = q.state.clone();
    let fail = |code: ErrorCode, description: String| {
        redirect_error(
            &auth,
            &redirect_uri,
            state.as_deref(),
            OAuthError::new(code, description),
        )
    };
    if q.response_type.as_deref() != Some("code") {
        return fail(
            ErrorCode::UnsupportedResponseType,
            "response_type must be \"code\" (the authorization code flow)".into(),
        );
    }
    let Some(challenge) = q.code_challenge.clone() else {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge is required: PKCE with S256 is mandatory".into(),
        );
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256 (plain is not accepted)".into(),
        );
    }
    if !is_pkce_value(&challenge) {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge must be 43-128 characters of base64url".into(),
        );
    }
    if state.as_ref().is_some_and(|s| s.len() > 2048) {
        return fail(
            ErrorCode::InvalidRequest,
            "state is too long (over 2048 bytes)".into(),
        );
    }
    let audience = match q.resource.as_deref() {
        Some(r) => match auth.parse_resource(r) {
            Some(a) => a,
            None => {
                return fail(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource {:?} is not served by this gateway; use a service URL such as {}",
                        r.chars().take(200).collect::<String>(),
                        auth.resource_url("<service>")
                    ),
                );
            }
        },
        None if auth.settings.require_resource => {
            return fail(
                ErrorCode::InvalidTarget,
                "resource is required (RFC 8707): name the MCP server URL the token is for".into(),
            );
        }
        None => Audience::Gateway,
    };
    let scope = auth.grant_scopes(q.scope.as_deref(), &audience);
    let redirect_uri_sent = q.redirect_uri.is_some();

    // The browser: its existing cookie, or a new one.
    let (browser, new_cookie) = browser_binding(&auth, &headers);
    let request = Token::<LoginState>::generate();
    let pending = PendingAuthorization {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        redirect_uri_sent,
        state,
        code_challenge: challenge,
        scope,
        audience,
        browser: browser.clone(),
        csrf: String::new(),
        upstream: None,
        self_service: false,
    };
    let force_login = q
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|p| p == "login"));
    let force_consent = q
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|p| p == "consent"));
    let mut resp = 'next: {
        if !force_login
            && let Some((_, session)) = signed_in(&auth, &headers).await
            && auth.still_allowed(&session.identity).is_ok()
        {
            break 'next after_sign_in(&auth, &request, pending, &session, force_consent).await;
        }
        begin_sign_in(&auth, &request, pending).await
    };
    if let Some(c) = new_cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Not signed in: to the sign-in form, or to the identity provider.
async fn begin_sign_in(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    mut pending: PendingAuthorization,
) -> Response {
    match &auth.login {
        Login::Local(_) => {
            if let Err(r) = save_pending(auth, request, &pending).await {
                return r;
            }
            found(&auth.url(&format!("/login?request={}", request.reveal())))
        }
        Login::Upstream(provider) => {
            let (url, upstream) = match provider.start(&callback_url(auth), request.reveal()) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("cannot start sign-in at the identity provider: {e}");
                    return web::error_page(
                        StatusCode::BAD_GATEWAY,
                        "Sign-in unavailable",
                        &format!("The identity provider cannot be reached: {e}"),
                    );
                }
            };
            pending.upstream = serde_json::to_value(&upstream).ok();
            if let Err(r) = save_pending(auth, request, &pending).await {
                return r;
            }
            found(url.as_str())
        }
    }
}

/// `/my/login?next=/my/tokens`: sign in to the gateway itself (for the `/my`
/// pages), without an OAuth client. The same sign-in as `/authorize`, then
/// straight back to `next`.
pub async fn my_sign_in(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = q
        .next
        .filter(|n| n.starts_with("/my/") && !n.contains("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/my/tokens".to_string());
    let target = auth.url(&next);
    if signed_in(&auth, &headers).await.is_some() {
        return found(&target);
    }
    let (browser, new_cookie) = browser_binding(&auth, &headers);
    let pending = PendingAuthorization {
        client_id: crate::caller::ClientId::new("mcpgate"),
        client_name: Some("mcpgate".into()),
        redirect_uri: target,
        redirect_uri_sent: false,
        state: None,
        code_challenge: String::new(),
        scope: Vec::new(),
        audience: Audience::Gateway,
        browser,
        csrf: String::new(),
        upstream: None,
        self_service: true,
    };
    let request = Token::<LoginState>::generate();
    let mut resp = begin_sign_in(&auth, &request, pending).await;
    if let Some(c) = new_cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Signed in: straight to the client when this person already consented to this
/// client for these scopes, otherwise to the consent page.
async fn after_sign_in(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    pending: PendingAuthorization,
    session: &BrowserSession,
    force_consent: bool,
) -> Response {
    if pending.self_service {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        return found(&pending.redirect_uri);
    }
    if !force_consent
        && let Ok(Some(consent)) = auth
            .store
            .get::<Consent>(&Consent::key(&session.user, &pending.client_id))
            .await
        && pending.scope.iter().all(|s| consent.scope.contains(s))
        && (consent.audience == Audience::Gateway || consent.audience == pending.audience)
    {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        return issue_code(auth, &pending, session).await;
    }
    if let Err(r) = save_pending(auth, request, &pending).await {
        return r;
    }
    found(&auth.url(&format!("/consent?request={}", request.reveal())))
}

async fn issue_code(
    auth: &Auth,
    pending: &PendingAuthorization,
    session: &BrowserSession,
) -> Response {
    let code = Token::<AuthorizationCode>::generate();
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_sent: pending.redirect_uri_sent,
        code_challenge: pending.code_challenge.clone(),
        scope: pending.scope.clone(),
        audience: pending.audience.clone(),
        user: session.user.clone(),
        identity: session.identity.clone(),
        family: FamilyId::generate(),
    };
    if let Err(e) = auth
        .store
        .put(
            &code.hash().to_hex(),
            &grant,
            Some(SystemTime::now() + CODE_TTL),
        )
        .await
    {
        tracing::error!("cannot store an authorization code: {e}");
        return redirect_error(
            auth,
            &pending.redirect_uri,
            pending.state.as_deref(),
            OAuthError::new(ErrorCode::ServerError, "the gateway's store is unavailable"),
        );
    }
    tracing::info!(
        user = session.user.as_str(),
        client_id = pending.client_id.as_str(),
        "authorization code issued"
    );
    match redirect::build(
        &pending.redirect_uri,
        Outcome::Code {
            code: code.reveal(),
        },
        pending.state.as_deref(),
        &auth.issuer,
    ) {
        Some(url) => found(url.as_str()),
        None => web::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        ),
    }
}

// ---- local sign-in ------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    request: Option<String>,
}

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
    let csrf = Token::<Csrf>::generate();
    pending.csrf = csrf.hash().to_hex();
    if let Err(r) = save_pending(auth, request, &pending).await {
        return r;
    }
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    web::page(
        status,
        "Sign in",
        &format!(
            "<h1>Sign in to {}</h1>{error}<form method=\"post\" action=\"{}\">{}{}\
             <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"muted\">{} wants to connect.</p>",
            escape(&auth.issuer),
            escape(&auth.url("/login")),
            hidden("request", request.reveal()),
            hidden("csrf", csrf.reveal()),
            escape(
                pending
                    .client_name
                    .as_deref()
                    .unwrap_or(pending.client_id.as_str())
            ),
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

// ---- upstream sign-in -----------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn callback(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let (request, pending) = match load_pending(&auth, &headers, q.state.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Login::Upstream(provider) = &auth.login else {
        return web::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No identity provider here.",
        );
    };
    if let Some(error) = q.error.as_deref() {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        tracing::info!(
            error = error.chars().take(64).collect::<String>(),
            "the identity provider refused the sign-in"
        );
        return redirect_error(
            &auth,
            &pending.redirect_uri,
            pending.state.as_deref(),
            OAuthError::new(
                ErrorCode::AccessDenied,
                "sign-in was cancelled or refused at the identity provider",
            ),
        );
    }
    let (Some(code), Some(upstream)) = (q.code.as_deref(), pending.upstream.clone()) else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider's answer has no code. Connect again from your application.",
        );
    };
    let Ok(upstream) = serde_json::from_value(upstream) else {
        return web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in cannot be finished. Connect again from your application.",
        );
    };
    // The request is single-use from here: a replayed callback finds nothing.
    let _ = auth
        .store
        .delete::<PendingAuthorization>(&request.hash().to_hex())
        .await;
    let identity = match provider.finish(&callback_url(&auth), code, upstream).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("sign-in at the identity provider failed: {e}");
            return web::error_page(
                StatusCode::FORBIDDEN,
                "Sign-in failed",
                &format!("{e}. Connect again from your application."),
            );
        }
    };
    signed_in_now(&auth, &request, pending, identity).await
}

/// A person just proved who they are: check the access policy, start a browser
/// session under a new cookie (never the pre-login one: session fixation), go on.
async fn signed_in_now(
    auth: &Arc<Auth>,
    request: &Token<LoginState>,
    pending: PendingAuthorization,
    identity: Identity,
) -> Response {
    if let Err(why) = auth.still_allowed(&identity) {
        let _ = auth
            .store
            .delete::<PendingAuthorization>(&request.hash().to_hex())
            .await;
        tracing::info!(
            email = identity.email.as_str(),
            provider = identity.provider.as_str(),
            "sign-in refused by the access policy"
        );
        return web::error_page(
            StatusCode::FORBIDDEN,
            "Access denied",
            &format!(
                "{} is signed in, but {why}. Ask the gateway's administrator for access.",
                identity.email
            ),
        );
    }
    let session = BrowserSession {
        user: UserId::new(format!("{}:{}", identity.provider, identity.subject)),
        identity,
        signed_in_at: now_unix(),
        csrf: None,
    };
    let token = Token::<Browser>::generate();
    if let Err(e) = auth
        .store
        .put(
            &token.hash().to_hex(),
            &session,
            Some(SystemTime::now() + auth.settings.login_ttl),
        )
        .await
    {
        tracing::error!("cannot store a browser session: {e}");
        return web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in failed",
            "The gateway's store is unavailable; try again shortly.",
        );
    }
    tracing::info!(user = session.user.as_str(), "signed in");
    let mut resp = after_sign_in(auth, request, pending, &session, false).await;
    if let Ok(v) =
        HeaderValue::from_str(&auth.cookie(SESSION_COOKIE, token.reveal(), auth.settings.login_ttl))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// ---- consent --------------------------------------------------------------------

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
    let csrf = Token::<Csrf>::generate();
    pending.csrf = csrf.hash().to_hex();
    if let Err(r) = save_pending(&auth, &request, &pending).await {
        return r;
    }
    let target = redirect_host(&pending.redirect_uri);
    let services = match &pending.audience {
        Audience::Service(s) => format!("<code>{}</code>", escape(s)),
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
            &auth,
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

/// Sign out of the gateway in this browser.
pub async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some((key, _)) = signed_in(&auth, &headers).await {
        let _ = auth.store.delete::<BrowserSession>(&key).await;
    }
    let mut resp = web::page(
        StatusCode::OK,
        "Signed out",
        "<h1>Signed out</h1><p>You are signed out of the gateway in this browser.</p>",
    );
    if let Ok(v) = HeaderValue::from_str(&auth.cookie(SESSION_COOKIE, "", Duration::ZERO)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// ---- shared pieces ----------------------------------------------------------------

/// Who may sign in (`proxy.auth.allowed*`). `Err` says why not.
pub fn allowed(policy: &AccessPolicy, id: &Identity) -> Result<(), String> {
    let any_list = !(policy.domains.is_empty()
        && policy.emails.is_empty()
        && policy.orgs.is_empty()
        && policy.groups.is_empty());
    if !any_list {
        return if policy.allow_all_known_users {
            Ok(())
        } else {
            Err("no one is allowed in by the gateway's configuration".into())
        };
    }
    let email = id.email.to_ascii_lowercase();
    if policy.emails.contains(&email) {
        return Ok(());
    }
    // Google: the verified Workspace domain (`hd`), never the email's text.
    // Others: the domain of the provider-verified email.
    let domain = if id.provider == "google" {
        id.domain.clone()
    } else {
        email.rsplit_once('@').map(|(_, d)| d.to_string())
    };
    if domain.is_some_and(|d| policy.domains.contains(&d.to_ascii_lowercase())) {
        return Ok(());
    }
    if id
        .orgs
        .iter()
        .any(|o| policy.orgs.contains(&o.to_ascii_lowercase()))
    {
        return Ok(());
    }
    if id.groups.iter().any(|g| policy.groups.contains(g)) {
        return Ok(());
    }
    Err("this account is not in an allowed domain, organisation, group or email list".into())
}

fn callback_url(auth: &Auth) -> String {
    auth.url("/oauth/callback")
}

/// This browser's binding (the hash of its cookie), and the `Set-Cookie` to send
/// when it had none yet.
fn browser_binding(auth: &Auth, headers: &HeaderMap) -> (String, Option<String>) {
    match browser_cookie(auth, headers) {
        Some(b) => (b, None),
        None => {
            let b = Token::<Browser>::generate();
            let cookie = auth.cookie(BROWSER_COOKIE, b.reveal(), auth.settings.login_ttl);
            (b.hash().to_hex(), Some(cookie))
        }
    }
}

/// The hash of this browser's binding cookie, if it sent a well-formed one.
pub(super) fn browser_cookie(auth: &Auth, headers: &HeaderMap) -> Option<String> {
    cookie_hash(auth, headers, BROWSER_COOKIE)
}

fn cookie_hash(auth: &Auth, headers: &HeaderMap, cookie: &str) -> Option<String> {
    let name = auth.cookie_name(cookie);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| Token::<Browser>::parse(v).ok())
        .map(|t| t.hash().to_hex())
}

/// The signed-in session of this browser (its store key and record).
pub(super) async fn signed_in(
    auth: &Auth,
    headers: &HeaderMap,
) -> Option<(String, BrowserSession)> {
    let key = cookie_hash(auth, headers, SESSION_COOKIE)?;
    let session = auth
        .store
        .get::<BrowserSession>(&key)
        .await
        .ok()
        .flatten()?;
    Some((key, session))
}

async fn save_pending(
    auth: &Auth,
    request: &Token<LoginState>,
    pending: &PendingAuthorization,
) -> Result<(), Response> {
    auth.store
        .put(
            &request.hash().to_hex(),
            pending,
            Some(SystemTime::now() + REQUEST_TTL),
        )
        .await
        .map_err(|e| {
            tracing::error!("cannot store an authorization request: {e}");
            web::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The gateway's store is unavailable; try again shortly.",
            )
        })
}

/// The request a page or form refers to, if it exists and belongs to this browser.
async fn load_pending(
    auth: &Auth,
    headers: &HeaderMap,
    request: Option<&str>,
) -> Result<(Token<LoginState>, PendingAuthorization), Response> {
    let expired = || {
        web::error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in link has expired or was already used. Go back to your application and connect again.",
        )
    };
    let request = request
        .and_then(|r| Token::<LoginState>::parse(r).ok())
        .ok_or_else(expired)?;
    let pending = auth
        .store
        .get::<PendingAuthorization>(&request.hash().to_hex())
        .await
        .ok()
        .flatten()
        .ok_or_else(expired)?;
    match browser_cookie(auth, headers) {
        Some(b) if secure_eq(&b, &pending.browser) => Ok((request, pending)),
        _ => Err(web::error_page(
            StatusCode::FORBIDDEN,
            "Wrong browser",
            "This sign-in was started in another browser (or your cookies were cleared). Connect again from your application in this browser.",
        )),
    }
}

fn check_csrf(pending: &PendingAuthorization, presented: Option<&str>) -> Result<(), Response> {
    let ok = presented
        .and_then(|c| Token::<Csrf>::parse(c).ok())
        .is_some_and(|c| !pending.csrf.is_empty() && secure_eq(&c.hash().to_hex(), &pending.csrf));
    if ok {
        Ok(())
    } else {
        Err(web::error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is out of date or did not come from this gateway (CSRF check failed). Reload the page and try again.",
        ))
    }
}

fn redirect_error(auth: &Auth, target: &str, state: Option<&str>, error: OAuthError) -> Response {
    match redirect::build(
        target,
        Outcome::Error { error: &error },
        state,
        &auth.issuer,
    ) {
        Some(url) => found(url.as_str()),
        None => web::error_page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            &error.description,
        ),
    }
}

/// 302, which every client follows (a 307 broke Claude.ai), with the page headers.
pub(super) fn found(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    web::secure_headers(h);
    resp
}

fn redirect_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => match u.host_str() {
            Some(h) if u.scheme() == "https" || u.scheme() == "http" => match u.port() {
                Some(p) if u.scheme() == "http" => format!("{h}:{p}"),
                _ => h.to_string(),
            },
            Some(h) => format!("{}://{h}", u.scheme()),
            None => format!("{}:", u.scheme()),
        },
        Err(_) => uri.chars().take(80).collect(),
    }
}

pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
#[allow(dead_code)]
fn _assert_send(auth: Arc<Auth>, p: super::idp::PendingLogin) {
    fn is_send<T: Send>(_: T) {}
    if let Login::Upstream(provider) = &auth.login {
        is_send(provider.finish("", "", p));
    }
}
