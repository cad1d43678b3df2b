//! An in-process stand-in for a service's OAuth provider (think Linear), on
//! 127.0.0.1, for tests of "Connect" at `/my/tokens`.
//!
//! `/authorize` approves at once: it answers 302 straight back to the
//! `redirect_uri` with a `code` and the `state`. Everything else is checked as a
//! real provider would: client id and secret (HTTP Basic or in the body),
//! redirect URI, PKCE S256 (the verifier must hash to the challenge), single-use
//! codes, and refresh tokens that rotate (an old one is refused with
//! `invalid_grant`). Knobs change the access-token lifetime or make every
//! refresh fail.
//!
//! Standalone: include with `#[path = "common/fake_upstream.rs"] mod fake_upstream;`.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Knobs {
    /// `expires_in` of the access tokens issued from now on.
    pub access_ttl: i64,
    /// Every refresh answers `invalid_grant`.
    pub refresh_fails: bool,
    /// Issue a new refresh token with every refresh (and retire the old one).
    pub rotate_refresh: bool,
    /// Refuse HTTP Basic client authentication (secret in the body only).
    pub post_only: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            access_ttl: 3600,
            refresh_fails: false,
            rotate_refresh: true,
            post_only: false,
        }
    }
}

#[derive(Debug, Clone)]
struct PendingCode {
    challenge: String,
    redirect_uri: String,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub knobs: Knobs,
    codes: HashMap<String, PendingCode>,
    live_refresh: HashSet<String>,
    /// Every token ever issued, for tests that look for them where they must not be.
    pub access_tokens: Vec<String>,
    pub refresh_tokens: Vec<String>,
    /// The query of the last `/authorize` request.
    pub last_authorize: HashMap<String, String>,
    pub authorize_hits: usize,
    pub code_hits: usize,
    pub refresh_hits: usize,
    /// How the client authenticated at `/token` last: "basic" or "post".
    pub last_client_auth: Option<&'static str>,
}

pub struct FakeUpstream {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub const CLIENT_ID: &'static str = "linear-client";
    pub const CLIENT_SECRET: &'static str = "linear-secret:with/odd chars";

    pub async fn start() -> FakeUpstream {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake provider");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeUpstream { addr, inner, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake state")
    }

    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.state().knobs);
    }

    pub fn refresh_hits(&self) -> usize {
        self.state().refresh_hits
    }

    pub fn last_access_token(&self) -> String {
        self.state()
            .access_tokens
            .last()
            .cloned()
            .expect("an access token was issued")
    }
}

fn random() -> String {
    mcpgate::util::random_id()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error, "error_description": format!("fake provider: {error}")}).to_string(),
    )
        .into_response()
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = inner.lock().expect("fake state");
    s.authorize_hits += 1;
    s.last_authorize = q.clone();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != FakeUpstream::CLIENT_ID
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("state").is_empty()
        || !get("redirect_uri").starts_with("http://127.0.0.1:")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = format!("lin_code_{}", random());
    s.codes.insert(
        code.clone(),
        PendingCode {
            challenge: get("code_challenge"),
            redirect_uri: get("redirect_uri"),
        },
    );
    let mut back = url::Url::parse(&get("redirect_uri")).expect("redirect_uri");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (decode(id), decode(secret)))
        });
    let (how, id, secret) = match basic {
        Some((id, secret)) => ("basic", id, secret),
        None => (
            "post",
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let post_only = inner.lock().expect("fake state").knobs.post_only;
    if id != FakeUpstream::CLIENT_ID
        || secret != FakeUpstream::CLIENT_SECRET
        || (post_only && how == "basic")
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|a| !a.contains("application/json"))
    {
        return (StatusCode::NOT_ACCEPTABLE, "ask for JSON").into_response();
    }
    let mut s = inner.lock().expect("fake state");
    s.last_client_auth = Some(how);
    let knobs = s.knobs.clone();
    let mut new_refresh = true;
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            s.code_hits += 1;
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(pending) = s.codes.remove(&code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if challenge != pending.challenge
                || form.get("redirect_uri") != Some(&pending.redirect_uri)
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        Some("refresh_token") => {
            s.refresh_hits += 1;
            let given = form.get("refresh_token").cloned().unwrap_or_default();
            if knobs.refresh_fails || !s.live_refresh.contains(&given) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            if knobs.rotate_refresh {
                s.live_refresh.remove(&given);
            } else {
                new_refresh = false;
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let access = format!("lin_at_{}", random());
    s.access_tokens.push(access.clone());
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": knobs.access_ttl,
        "scope": "read write",
    });
    if new_refresh {
        let refresh = format!("lin_rt_{}", random());
        s.live_refresh.insert(refresh.clone());
        s.refresh_tokens.push(refresh.clone());
        answer["refresh_token"] = json!(refresh);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}
