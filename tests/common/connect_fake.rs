//! A scripted MCP server and authorization server in one (axum, in the test
//! process), for the failures a real authorization server rarely shows on
//! demand: failing refreshes, forgotten clients, no S256, refusing every token,
//! scope step-up. It approves every authorization at once (302 to the client).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Refresh {
    #[default]
    Works,
    InvalidGrant,
}

#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Lifetime (seconds) of the first access token; later ones live an hour.
    pub first_token_ttl: Option<u64>,
    pub refresh: Refresh,
    pub no_s256: bool,
    pub refuse_all_tokens: bool,
    /// tools/call needs this scope (403 insufficient_scope otherwise).
    pub tool_scope: Option<String>,
    /// Every MCP request must carry `X-Api-Key` with this value (400 otherwise).
    pub api_key: Option<String>,
    /// Offer the device authorization grant (approved at the second poll).
    pub device: bool,
}

#[derive(Default)]
struct Inner {
    script: Script,
    base: String,
    counts: HashMap<String, usize>,
    clients: Vec<String>,
    codes: HashMap<String, (String, Option<String>)>,
    access: HashMap<String, (Instant, Option<String>)>,
    refresh: HashMap<String, (String, Option<String>)>,
    issued: usize,
    authorize_scopes: Vec<Value>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Fake {
    pub base: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }
    pub fn count(&self, what: &str) -> usize {
        self.state
            .lock()
            .expect("lock")
            .counts
            .get(what)
            .copied()
            .unwrap_or(0)
    }
    pub fn forget_clients(&self) {
        self.state.lock().expect("lock").clients.clear();
    }
    /// Every access token issued so far stops working (the refresh tokens do not).
    pub fn expire_access_tokens(&self) {
        self.state.lock().expect("lock").access.clear();
    }
    pub fn authorize_scopes(&self) -> Vec<Value> {
        self.state.lock().expect("lock").authorize_scopes.clone()
    }
}

pub async fn start(script: Script) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state: Shared = Arc::new(Mutex::new(Inner {
        script,
        base: base.clone(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/.well-known/oauth-authorization-server", get(as_meta))
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/device", post(device))
        .route(
            "/mcp",
            post(mcp)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                .delete(|| async { StatusCode::OK }),
        )
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { base, state, task }
}

fn bump(s: &mut Inner, what: &str) {
    *s.counts.entry(what.to_string()).or_default() += 1;
}

async fn prm(State(st): State<Shared>) -> Response {
    let s = st.lock().expect("lock");
    axum::Json(json!({
        "resource": format!("{}/mcp", s.base),
        "authorization_servers": [s.base],
        "scopes_supported": ["read", "write"],
    }))
    .into_response()
}

async fn as_meta(State(st): State<Shared>) -> Response {
    let s = st.lock().expect("lock");
    let b = &s.base;
    let mut meta = json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "registration_endpoint": format!("{b}/register"),
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
    });
    if s.script.device {
        meta["device_authorization_endpoint"] = json!(format!("{b}/device"));
    }
    if s.script.no_s256 {
        meta.as_object_mut()
            .expect("object")
            .remove("code_challenge_methods_supported");
    }
    axum::Json(meta).into_response()
}

async fn register(State(st): State<Shared>) -> Response {
    let mut s = st.lock().expect("lock");
    bump(&mut s, "register");
    let id = format!("client-{}", s.counts["register"]);
    s.clients.push(id.clone());
    (
        StatusCode::CREATED,
        axum::Json(json!({"client_id": id, "token_endpoint_auth_method": "none"})),
    )
        .into_response()
}

async fn authorize(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = st.lock().expect("lock");
    bump(&mut s, "authorize");
    let client = q.get("client_id").cloned().unwrap_or_default();
    if !s.clients.contains(&client)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "unknown client or no PKCE").into_response();
    }
    let scope = q.get("scope").cloned();
    s.authorize_scopes
        .push(scope.clone().map_or(Value::Null, Value::String));
    let code = format!("code-{}", s.counts["authorize"]);
    s.codes.insert(code.clone(), (client, scope));
    let mut to = url::Url::parse(q.get("redirect_uri").map(String::as_str).unwrap_or(""))
        .expect("redirect_uri");
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""))
        .append_pair("iss", &s.base);
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

async fn device(State(st): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = st.lock().expect("lock");
    bump(&mut s, "device");
    let client = f.get("client_id").cloned().unwrap_or_default();
    if !s.clients.contains(&client) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    s.codes
        .insert("device-code".into(), (client, f.get("scope").cloned()));
    let b = s.base.clone();
    axum::Json(json!({
        "device_code": "device-code", "user_code": "WDJB-MJHT",
        "verification_uri": format!("{b}/device"), "expires_in": 60, "interval": 1
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": "scripted"})),
    )
        .into_response()
}

fn issue(s: &mut Inner, client: String, scope: Option<String>) -> Response {
    s.issued += 1;
    let ttl = match (s.issued, s.script.first_token_ttl) {
        (1, Some(t)) => t,
        _ => 3600,
    };
    let access = format!("at-{}", s.issued);
    let refresh = format!("rt-{}", s.issued);
    s.access.insert(
        access.clone(),
        (Instant::now() + Duration::from_secs(ttl), scope.clone()),
    );
    s.refresh.insert(refresh.clone(), (client, scope));
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl, "refresh_token": refresh})),
    )
        .into_response()
}

async fn token(State(st): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = st.lock().expect("lock");
    let client = f.get("client_id").cloned().unwrap_or_default();
    let known = s.clients.contains(&client);
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            bump(&mut s, "code");
            if !known {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
            }
            let code = f.get("code").cloned().unwrap_or_default();
            match s.codes.remove(&code) {
                Some((c, scope)) if c == client => issue(&mut s, client, scope),
                _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            bump(&mut s, "device_poll");
            if s.counts["device_poll"] < 2 {
                return oauth_error(StatusCode::BAD_REQUEST, "authorization_pending");
            }
            match s
                .codes
                .remove(f.get("device_code").map(String::as_str).unwrap_or(""))
            {
                Some((c, scope)) if c == client => issue(&mut s, client, scope),
                _ => oauth_error(StatusCode::BAD_REQUEST, "expired_token"),
            }
        }
        Some("refresh_token") => {
            bump(&mut s, "refresh");
            if !known {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
            }
            if s.script.refresh == Refresh::InvalidGrant {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match s.refresh.remove(&rt) {
                Some((c, scope)) if c == client => issue(&mut s, client, scope),
                _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn mcp(State(st): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let s = st.lock().expect("lock");
    let challenge = |extra: &str| {
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\", scope=\"read\"{extra}",
            s.base
        )
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let granted = match s.access.get(bearer) {
        Some((until, scope)) if *until > Instant::now() && !s.script.refuse_all_tokens => {
            scope.clone()
        }
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge(""))],
            )
                .into_response();
        }
    };
    if let Some(key) = &s.script.api_key
        && headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return (StatusCode::BAD_REQUEST, "X-Api-Key missing or wrong").into_response();
    }
    let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let method = msg["method"].as_str().unwrap_or("");
    if msg.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    if let (Some(need), "tools/call") = (&s.script.tool_scope, method) {
        let has = granted
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .any(|g| g == need);
        if !has {
            return (
                StatusCode::FORBIDDEN,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"insufficient_scope\", scope=\"{need}\""),
                )],
            )
                .into_response();
        }
    }
    let result = match method {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "0"}})
        }
        "tools/call" => json!({"content": [{"type": "text", "text": "ok"}]}),
        _ => json!({}),
    };
    (
        [("mcp-session-id", "fake-session")],
        axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result})),
    )
        .into_response()
}
