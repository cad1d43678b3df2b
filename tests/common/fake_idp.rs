//! In-process stand-ins for an OpenID Connect provider and for GitHub, on
//! 127.0.0.1, for tests of the login flow without a browser.
//!
//! Both authorize at once: their `/authorize` answers 302 straight back to the
//! `redirect_uri` with a `code` and the `state`, for whichever user the test set.
//! Everything else is checked as a real provider would (client id and secret,
//! redirect URI, PKCE S256, single-use codes), so a client that skips a step
//! fails here too. Knobs make the OIDC fake misbehave in one way at a time.
//!
//! ```ignore
//! let idp = FakeOidc::start(FakeUser::new("u1", "alice@example.com")).await;
//! // issuer: idp.issuer(), client: FakeOidc::CLIENT_ID / FakeOidc::CLIENT_SECRET
//! idp.knobs(|k| k.expired = true);
//! let gh = FakeGithub::start().await; // gh.base(), FakeGithub::CLIENT_ID ...
//! ```
//!
//! Standalone: include with `#[path = "common/fake_idp.rs"] mod fake_idp;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- OIDC

/// Who the fake says is logging in.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub sub: String,
    pub email: String,
    /// A JSON value so that tests can send `"true"` (Google's old string form).
    pub email_verified: Value,
    pub name: Option<String>,
    /// Google's Workspace domain claim.
    pub hd: Option<String>,
    /// Sent as the `groups` claim when not empty.
    pub groups: Vec<String>,
}

impl FakeUser {
    pub fn new(sub: &str, email: &str) -> FakeUser {
        FakeUser {
            sub: sub.into(),
            email: email.into(),
            email_verified: Value::Bool(true),
            name: None,
            hd: None,
            groups: Vec::new(),
        }
    }
    pub fn verified(mut self, v: impl Into<Value>) -> FakeUser {
        self.email_verified = v.into();
        self
    }
    pub fn name(mut self, name: &str) -> FakeUser {
        self.name = Some(name.into());
        self
    }
    pub fn hd(mut self, hd: &str) -> FakeUser {
        self.hd = Some(hd.into());
        self
    }
    pub fn groups(mut self, groups: &[&str]) -> FakeUser {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }
}

/// Ways the fake OIDC provider can misbehave; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Sign the ID token with a key it does not publish, under the published kid.
    pub wrong_key: bool,
    /// Sign with an unpublished key under a kid it does not publish either.
    pub unknown_kid: bool,
    /// Sign HS256 with the client secret as the key (the classic confusion).
    pub hs256: bool,
    pub wrong_audience: bool,
    pub wrong_issuer: bool,
    pub wrong_nonce: bool,
    pub expired: bool,
    /// Several audiences and no `azp`.
    pub extra_audience_without_azp: bool,
    pub omit_id_token: bool,
    /// Put email, email_verified and groups only in userinfo, not the ID token.
    pub claims_only_in_userinfo: bool,
    /// Userinfo answers for another `sub`.
    pub userinfo_other_sub: bool,
    /// Advertise (and accept) only `client_secret_post`.
    pub post_auth_only: bool,
}

struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> SigningKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key");
        let pkcs8 = pair.to_pkcs8v1().expect("PKCS#8");
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        });
        SigningKey {
            kid: kid.into(),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    scope: String,
    user: FakeUser,
}

struct OidcState {
    user: FakeUser,
    knobs: Knobs,
    key: Arc<SigningKey>,
    key_generation: usize,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, FakeUser>,
    hits: HashMap<String, usize>,
    last_authorize: HashMap<String, String>,
    last_client_auth: Option<&'static str>,
}

struct OidcShared {
    issuer: String,
    state: Mutex<OidcState>,
}

impl OidcShared {
    fn lock(&self) -> MutexGuard<'_, OidcState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn hit(&self, path: &str) {
        *self.lock().hits.entry(path.to_string()).or_default() += 1;
    }
}

/// A fake OpenID Connect provider.
pub struct FakeOidc {
    addr: SocketAddr,
    shared: Arc<OidcShared>,
    task: JoinHandle<()>,
}

impl Drop for FakeOidc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOidc {
    pub const CLIENT_ID: &'static str = "fake-oidc-client";
    pub const CLIENT_SECRET: &'static str = "fake-oidc-secret-do-not-print";

    pub async fn start(user: FakeUser) -> FakeOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake OIDC provider");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(OidcShared {
            issuer: format!("http://{addr}"),
            state: Mutex::new(OidcState {
                user,
                knobs: Knobs::default(),
                key: Arc::new(SigningKey::generate("key-1")),
                key_generation: 1,
                codes: HashMap::new(),
                tokens: HashMap::new(),
                hits: HashMap::new(),
                last_authorize: HashMap::new(),
                last_client_auth: None,
            }),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(oidc_discovery))
            .route("/authorize", get(oidc_authorize))
            .route("/token", post(oidc_token))
            .route("/jwks", get(oidc_jwks))
            .route("/userinfo", get(oidc_userinfo))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOidc { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    pub fn set_user(&self, user: FakeUser) {
        self.shared.lock().user = user;
    }

    /// Change the knobs, e.g. `idp.knobs(|k| k.expired = true)`.
    pub fn knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.shared.lock().knobs);
    }

    /// Replace the signing key with a new one under a new kid, as a provider's
    /// key rotation does.
    pub fn rotate_key(&self) {
        let mut st = self.shared.lock();
        st.key_generation += 1;
        let kid = format!("key-{}", st.key_generation);
        st.key = Arc::new(SigningKey::generate(&kid));
    }

    /// How many requests an endpoint got (`"/token"`, `"/jwks"`, ...).
    pub fn hits(&self, path: &str) -> usize {
        self.shared.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// The query parameters of the last `/authorize` request.
    pub fn last_authorize(&self) -> HashMap<String, String> {
        self.shared.lock().last_authorize.clone()
    }

    /// `"basic"` or `"post"`: how the client authenticated at the last `/token`.
    pub fn last_client_auth(&self) -> Option<&'static str> {
        self.shared.lock().last_client_auth
    }
}

async fn oidc_discovery(State(s): State<Arc<OidcShared>>) -> Response {
    s.hit("/.well-known/openid-configuration");
    let post_only = s.lock().knobs.post_auth_only;
    let iss = &s.issuer;
    let auth_methods = if post_only {
        json!(["client_secret_post"])
    } else {
        json!(["client_secret_basic", "client_secret_post"])
    };
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "claims_supported": ["sub", "email", "email_verified", "name", "hd", "groups"],
    }))
    .into_response()
}

async fn oidc_jwks(State(s): State<Arc<OidcShared>>) -> Response {
    s.hit("/jwks");
    let jwk = s.lock().key.jwk.clone();
    axum::Json(json!({ "keys": [jwk] })).into_response()
}

async fn oidc_authorize(
    State(s): State<Arc<OidcShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.hit("/authorize");
    let mut st = s.lock();
    st.last_authorize = q.clone();
    let param = |name: &str| q.get(name).map(String::as_str).unwrap_or("");
    if param("client_id") != FakeOidc::CLIENT_ID {
        return bad_request("unknown client_id");
    }
    if param("response_type") != "code" {
        return bad_request("response_type must be code");
    }
    if !param("scope").split(' ').any(|s| s == "openid") {
        return bad_request("scope must include openid");
    }
    if param("code_challenge").is_empty() || param("code_challenge_method") != "S256" {
        return bad_request("PKCE with S256 is required");
    }
    let Ok(mut back) = url::Url::parse(param("redirect_uri")) else {
        return bad_request("redirect_uri is not a URL");
    };
    let code = random_token("code");
    let grant = Grant {
        client_id: param("client_id").into(),
        redirect_uri: param("redirect_uri").into(),
        challenge: param("code_challenge").into(),
        nonce: q.get("nonce").cloned(),
        scope: param("scope").into(),
        user: st.user.clone(),
    };
    st.codes.insert(code.clone(), grant);
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", param("state"));
    redirect(back.as_str())
}

async fn oidc_token(State(s): State<Arc<OidcShared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.hit("/token");
    let form = parse_form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let mut st = s.lock();

    let basic = basic_credentials(&headers);
    let (client_id, secret, method) = match (&basic, form.contains_key("client_secret")) {
        (Some(_), true) => {
            return oauth_error(400, "invalid_request", "two client authentications");
        }
        (Some((id, secret)), false) => (id.clone(), secret.clone(), "basic"),
        (None, true) => (
            field("client_id").to_string(),
            field("client_secret").to_string(),
            "post",
        ),
        (None, false) => return oauth_error(401, "invalid_client", "no client authentication"),
    };
    st.last_client_auth = Some(method);
    if st.knobs.post_auth_only && method != "post" {
        return oauth_error(401, "invalid_client", "only client_secret_post is allowed");
    }
    if client_id != FakeOidc::CLIENT_ID || secret != FakeOidc::CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "client authentication failed");
    }
    if field("grant_type") != "authorization_code" {
        return oauth_error(400, "unsupported_grant_type", "only authorization_code");
    }
    // Single use, whatever happens next.
    let Some(grant) = st.codes.remove(field("code")) else {
        return oauth_error(400, "invalid_grant", "unknown or used authorization code");
    };
    if grant.client_id != client_id || grant.redirect_uri != field("redirect_uri") {
        return oauth_error(400, "invalid_grant", "redirect_uri or client mismatch");
    }
    if !pkce_matches(field("code_verifier"), &grant.challenge) {
        return oauth_error(400, "invalid_grant", "PKCE verification failed");
    }

    let knobs = st.knobs.clone();
    let access_token = random_token("at");
    st.tokens.insert(access_token.clone(), grant.user.clone());
    let now = now();
    let user = &grant.user;
    let mut claims = json!({
        "iss": if knobs.wrong_issuer { "http://evil.example".to_string() } else { s.issuer.clone() },
        "sub": user.sub,
        "aud": if knobs.wrong_audience { json!("someone-else") }
               else if knobs.extra_audience_without_azp { json!([FakeOidc::CLIENT_ID, "someone-else"]) }
               else { json!(FakeOidc::CLIENT_ID) },
        "iat": if knobs.expired { now - 7200 } else { now },
        "exp": if knobs.expired { now - 3600 } else { now + 300 },
    });
    let obj = claims.as_object_mut().expect("object");
    if !knobs.extra_audience_without_azp {
        obj.insert("azp".into(), json!(FakeOidc::CLIENT_ID));
    }
    if let Some(nonce) = &grant.nonce {
        let nonce = if knobs.wrong_nonce {
            "not-this-login".to_string()
        } else {
            nonce.clone()
        };
        obj.insert("nonce".into(), json!(nonce));
    }
    if !knobs.claims_only_in_userinfo {
        obj.insert("email".into(), json!(user.email));
        obj.insert("email_verified".into(), user.email_verified.clone());
        if !user.groups.is_empty() {
            obj.insert("groups".into(), json!(user.groups));
        }
    }
    if let Some(name) = &user.name {
        obj.insert("name".into(), json!(name));
    }
    if let Some(hd) = &user.hd {
        obj.insert("hd".into(), json!(hd));
    }

    let id_token = if knobs.hs256 {
        let header = Header::new(Algorithm::HS256);
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(FakeOidc::CLIENT_SECRET.as_bytes()),
        )
    } else {
        let published = st.key.clone();
        let stranger;
        let (key, kid) = if knobs.wrong_key {
            stranger = SigningKey::generate(&published.kid);
            (&stranger.key, published.kid.clone())
        } else if knobs.unknown_kid {
            stranger = SigningKey::generate("never-published");
            (&stranger.key, stranger.kid.clone())
        } else {
            (&published.key, published.kid.clone())
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, &claims, key)
    }
    .expect("sign ID token");

    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": grant.scope,
    });
    if !knobs.omit_id_token {
        answer["id_token"] = json!(id_token);
    }
    no_store(axum::Json(answer).into_response())
}

async fn oidc_userinfo(State(s): State<Arc<OidcShared>>, headers: HeaderMap) -> Response {
    s.hit("/userinfo");
    let st = s.lock();
    let Some(user) = bearer(&headers).and_then(|t| st.tokens.get(&t)) else {
        return (StatusCode::UNAUTHORIZED, "invalid_token").into_response();
    };
    let sub = if st.knobs.userinfo_other_sub {
        "someone-else".to_string()
    } else {
        user.sub.clone()
    };
    let mut info = json!({
        "sub": sub,
        "email": user.email,
        "email_verified": user.email_verified,
    });
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if let Some(name) = &user.name {
        info["name"] = json!(name);
    }
    axum::Json(info).into_response()
}

// ---------------------------------------------------------------- GitHub

#[derive(Debug, Clone)]
pub struct FakeGithubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Debug, Clone)]
pub struct FakeGithubUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub emails: Vec<FakeGithubEmail>,
    pub orgs: Vec<String>,
}

impl Default for FakeGithubUser {
    fn default() -> Self {
        FakeGithubUser {
            id: 4242,
            login: "octocat".into(),
            name: Some("The Octocat".into()),
            emails: vec![
                FakeGithubEmail {
                    email: "Octocat@Example.com".into(),
                    primary: true,
                    verified: true,
                },
                FakeGithubEmail {
                    email: "octo@other.example".into(),
                    primary: false,
                    verified: true,
                },
            ],
            orgs: vec!["Acme-Corp".into(), "open-source".into()],
        }
    }
}

struct GithubGrant {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    user: FakeGithubUser,
}

struct GithubState {
    user: FakeGithubUser,
    codes: HashMap<String, GithubGrant>,
    tokens: HashMap<String, (String, FakeGithubUser)>,
    hits: HashMap<String, usize>,
    last_authorize: HashMap<String, String>,
}

struct GithubShared {
    state: Mutex<GithubState>,
}

impl GithubShared {
    fn lock(&self) -> MutexGuard<'_, GithubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn hit(&self, path: &str) {
        *self.lock().hits.entry(path.to_string()).or_default() += 1;
    }
}

/// A fake GitHub: web (`/login/oauth/...`) and API (`/user...`) on one base URL.
pub struct FakeGithub {
    addr: SocketAddr,
    shared: Arc<GithubShared>,
    task: JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGithub {
    pub const CLIENT_ID: &'static str = "fake-github-client";
    pub const CLIENT_SECRET: &'static str = "fake-github-secret-do-not-print";

    /// Starts with [`FakeGithubUser::default`] (octocat, verified primary email,
    /// two orgs).
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitHub");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(GithubShared {
            state: Mutex::new(GithubState {
                user: FakeGithubUser::default(),
                codes: HashMap::new(),
                tokens: HashMap::new(),
                hits: HashMap::new(),
                last_authorize: HashMap::new(),
            }),
        });
        let app = Router::new()
            .route("/login/oauth/authorize", get(gh_authorize))
            .route("/login/oauth/access_token", post(gh_token))
            .route("/user", get(gh_user))
            .route("/user/emails", get(gh_emails))
            .route("/user/orgs", get(gh_orgs))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`: the web URL and the API URL both.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_user(&self, user: FakeGithubUser) {
        self.shared.lock().user = user;
    }

    pub fn hits(&self, path: &str) -> usize {
        self.shared.lock().hits.get(path).copied().unwrap_or(0)
    }

    pub fn last_authorize(&self) -> HashMap<String, String> {
        self.shared.lock().last_authorize.clone()
    }
}

async fn gh_authorize(
    State(s): State<Arc<GithubShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.hit("/login/oauth/authorize");
    let mut st = s.lock();
    st.last_authorize = q.clone();
    let param = |name: &str| q.get(name).map(String::as_str).unwrap_or("");
    if param("client_id") != FakeGithub::CLIENT_ID {
        return bad_request("unknown client_id");
    }
    let Ok(mut back) = url::Url::parse(param("redirect_uri")) else {
        return bad_request("redirect_uri is not a URL");
    };
    let challenge = match (param("code_challenge"), param("code_challenge_method")) {
        ("", _) => None,
        (c, "S256") => Some(c.to_string()),
        _ => return bad_request("only S256"),
    };
    let code = random_token("ghcode");
    let grant = GithubGrant {
        redirect_uri: param("redirect_uri").into(),
        challenge,
        scope: param("scope").replace(' ', ","),
        user: st.user.clone(),
    };
    st.codes.insert(code.clone(), grant);
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", param("state"));
    redirect(back.as_str())
}

/// GitHub answers errors with 200, and JSON only when asked.
async fn gh_token(State(s): State<Arc<GithubShared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.hit("/login/oauth/access_token");
    let form = parse_form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let answer = |pairs: Vec<(&str, String)>| -> Response {
        if json {
            let map: serde_json::Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
            axum::Json(Value::Object(map)).into_response()
        } else {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                ser.append_pair(k, &v);
            }
            (
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                ser.finish(),
            )
                .into_response()
        }
    };
    let error = |code: &str, description: &str| {
        answer(vec![
            ("error", code.to_string()),
            ("error_description", description.to_string()),
        ])
    };
    let mut st = s.lock();
    if field("client_id") != FakeGithub::CLIENT_ID
        || field("client_secret") != FakeGithub::CLIENT_SECRET
    {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let Some(grant) = st.codes.remove(field("code")) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if grant.redirect_uri != field("redirect_uri") {
        return error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    if let Some(challenge) = &grant.challenge
        && !pkce_matches(field("code_verifier"), challenge)
    {
        return error(
            "bad_verification_code",
            "The code_verifier does not match the code_challenge.",
        );
    }
    let token = random_token("gho");
    st.tokens
        .insert(token.clone(), (grant.scope.clone(), grant.user.clone()));
    answer(vec![
        ("access_token", token),
        ("token_type", "bearer".into()),
        ("scope", grant.scope),
    ])
}

/// The token's scope and user, or the answer GitHub gives without them.
fn gh_auth(
    s: &GithubShared,
    headers: &HeaderMap,
) -> Result<(String, FakeGithubUser), Box<Response>> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err(Box::new(
            (StatusCode::FORBIDDEN, "a User-Agent header is required").into_response(),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .map(str::to_string);
    let st = s.lock();
    match token.and_then(|t| st.tokens.get(&t).cloned()) {
        Some(found) => Ok(found),
        None => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "Bad credentials"})),
            )
                .into_response(),
        )),
    }
}

async fn gh_user(State(s): State<Arc<GithubShared>>, headers: HeaderMap) -> Response {
    s.hit("/user");
    let (_, user) = match gh_auth(&s, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    // `email` here is the public profile address: unverified, and not what a
    // client should use.
    axum::Json(json!({
        "id": user.id,
        "login": user.login,
        "name": user.name,
        "email": "public-profile-address@unverified.example",
    }))
    .into_response()
}

async fn gh_emails(State(s): State<Arc<GithubShared>>, headers: HeaderMap) -> Response {
    s.hit("/user/emails");
    let (scope, user) = match gh_auth(&s, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if !scope.split(',').any(|s| s == "user:email" || s == "user") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response();
    }
    let emails: Vec<Value> = user
        .emails
        .iter()
        .map(|e| json!({"email": e.email, "primary": e.primary, "verified": e.verified, "visibility": null}))
        .collect();
    axum::Json(Value::Array(emails)).into_response()
}

async fn gh_orgs(
    State(s): State<Arc<GithubShared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.hit("/user/orgs");
    let (_, user) = match gh_auth(&s, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let orgs: Vec<Value> = user
        .orgs
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|o| json!({"login": o, "id": 1}))
        .collect();
    axum::Json(Value::Array(orgs)).into_response()
}

// ---------------------------------------------------------------- helpers

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    !verifier.is_empty() && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `Authorization: Basic`, each half form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unform(id), unform(secret)))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, why.to_string()).into_response()
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    no_store(
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
