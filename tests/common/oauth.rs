//! An OAuth client and a scripted browser for tests of the authorization server,
//! written from the RFCs (not from the gateway's code): register, authorize with
//! PKCE, sign in on the real HTML form, consent, exchange the code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A gateway config with the local provider: alice and bob, password "pw-<name>".
pub fn local_auth(storage: &str) -> Value {
    let hash = |p: &str| mcpgate::util::password::hash(p).expect("hash");
    json!({
        "idp": {"provider": "local", "users": [
            {"email": "alice@example.com", "passwordHash": hash("pw-alice"), "name": "Alice"},
            {"email": "bob@example.com", "passwordHash": hash("pw-bob")}
        ]},
        "storage": storage,
        "rateLimits": {"token": 10000, "register": 10000, "login": 1000}
    })
}

/// A config with services `a` and `b` (the stdio test server) behind `auth`.
pub fn config_with(auth: Value) -> Value {
    json!({
        "proxy": {"auth": auth},
        "mcpServers": {"a": super::stdio_service(), "b": super::stdio_service()}
    })
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A browser: follows nothing by itself, keeps cookies by name.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    pub set_cookie_lines: Vec<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser {
            http: no_redirects(),
            cookies: HashMap::new(),
            set_cookie_lines: Vec::new(),
        }
    }
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let line = v.to_str().expect("ascii cookie").to_string();
            let pair = line.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
            self.set_cookie_lines.push(line);
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let resp = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        resp
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let resp = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST");
        self.keep(&resp);
        resp
    }
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {} answer", resp.status()))
        .to_str()
        .expect("ascii")
        .to_string()
}

/// Resolve a Location against the gateway.
pub fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .expect("location URL")
        .to_string()
}

/// The value of a hidden form field in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!("v{}", "0123456789abcdefghij".repeat(3));
    let verifier = format!("{verifier}{}", mcpgate::util::random_id());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

/// POST /register with this metadata; the JSON answer and its status.
pub async fn register(base: &str, metadata: Value) -> (u16, Value) {
    let resp = no_redirects()
        .post(format!("{base}/register"))
        .json(&metadata)
        .send()
        .await
        .expect("register");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A registered public client with the test redirect URI.
pub async fn public_client(base: &str) -> String {
    let (status, body) = register(
        base,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Test Client"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().expect("client_id").to_string()
}

pub struct Authorize<'a> {
    pub base: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub challenge: &'a str,
    pub resource: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub state: &'a str,
}

impl Authorize<'_> {
    pub fn url(&self) -> String {
        let mut u = url::Url::parse(&format!("{}/authorize", self.base)).expect("url");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri)
                .append_pair("code_challenge", self.challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", self.state);
            if let Some(r) = self.resource {
                q.append_pair("resource", r);
            }
            if let Some(s) = self.scope {
                q.append_pair("scope", s);
            }
        }
        u.to_string()
    }
}

/// The plainest authorization request: the test redirect URI, no resource or
/// scope, state `s`.
pub fn authorize_url(base: &str, client_id: &str, challenge: &str) -> String {
    Authorize {
        base,
        client_id,
        redirect_uri: REDIRECT,
        challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url()
}

/// Drive the browser from an authorization URL through the local sign-in form
/// and the consent page; return the final redirect to the client.
pub async fn sign_in_and_consent(
    browser: &mut Browser,
    base: &str,
    authorize_url: &str,
    email: &str,
    password: &str,
) -> String {
    let resp = browser.get(authorize_url).await;
    assert_eq!(resp.status(), 302, "authorize answers 302");
    let mut next = absolute(base, &location(&resp));
    if next.contains("/login?") {
        next = fill_sign_in_form(browser, base, &next, email, password).await;
    }
    if next.contains("/consent?") {
        next = approve(browser, base, &next).await;
    }
    next
}

/// Fill in and send the local sign-in form at `login_url`; return where the
/// gateway sends the browser next.
pub async fn fill_sign_in_form(
    browser: &mut Browser,
    base: &str,
    login_url: &str,
    email: &str,
    password: &str,
) -> String {
    let page = browser.get(login_url).await;
    assert_eq!(page.status(), 200, "the sign-in form");
    let html = page.text().await.expect("login page");
    let resp = browser
        .post(
            &format!("{base}/login"),
            &[
                ("request", &field(&html, "request")),
                ("csrf", &field(&html, "csrf")),
                ("email", email),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302, "sign-in succeeds");
    absolute(base, &location(&resp))
}

/// Sign in to the gateway's own pages (`/my/...`); return where it lands.
pub async fn sign_in_to_my_pages(
    browser: &mut Browser,
    base: &str,
    next: &str,
    email: &str,
    password: &str,
) -> String {
    let resp = browser.get(&format!("{base}/my/login?next={next}")).await;
    assert_eq!(resp.status(), 302);
    let form = absolute(base, &location(&resp));
    fill_sign_in_form(browser, base, &form, email, password).await
}

/// Approve on the consent page; return the redirect to the client.
pub async fn approve(browser: &mut Browser, base: &str, consent_url: &str) -> String {
    let page = browser.get(consent_url).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("consent page");
    let resp = browser
        .post(
            &format!("{base}/consent"),
            &[
                ("request", &field(&html, "request")),
                ("csrf", &field(&html, "csrf")),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302, "consent redirects");
    location(&resp)
}

/// POST /token with a form; status and JSON.
pub async fn token(base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = no_redirects()
        .post(format!("{base}/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POST /token: the refresh grant for a public client.
pub async fn refresh(base: &str, refresh_token: &str, client_id: &str) -> (u16, Value) {
    token(
        base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// POST /token: the authorization code grant for a public client, with the
/// test redirect URI.
pub async fn redeem(base: &str, code: &str, verifier: &str, client_id: &str) -> (u16, Value) {
    token(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ],
    )
    .await
}

pub struct Tokens {
    pub client_id: String,
    pub access: String,
    pub refresh: String,
}

/// The whole flow for a public client: register, authorize, sign in, consent,
/// exchange the code.
pub async fn tokens_for(base: &str, email: &str, password: &str, resource: Option<&str>) -> Tokens {
    let client_id = public_client(base).await;
    let mut browser = Browser::default();
    tokens_with(
        base,
        &mut browser,
        &client_id,
        email,
        password,
        resource,
        None,
    )
    .await
}

pub async fn tokens_with(
    base: &str,
    browser: &mut Browser,
    client_id: &str,
    email: &str,
    password: &str,
    resource: Option<&str>,
    scope: Option<&str>,
) -> Tokens {
    let p = pkce();
    let url = Authorize {
        base,
        client_id,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource,
        scope,
        state: "st-1",
    }
    .url();
    let back = sign_in_and_consent(browser, base, &url, email, password).await;
    assert!(back.starts_with(REDIRECT), "back at the client: {back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-1"));
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("a code in {back}"));
    let (status, body) = token(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_id", client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Tokens {
        client_id: client_id.to_string(),
        access: body["access_token"].as_str().expect("access").to_string(),
        refresh: body["refresh_token"].as_str().expect("refresh").to_string(),
    }
}

/// Status of an initialize at an MCP endpoint with this bearer token (or none).
pub async fn mcp_status(url: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = super::http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"}}})
            .to_string(),
        );
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("mcp request")
}

/// A gateway with the local provider (alice and bob) and a memory store.
pub async fn local_gateway() -> super::Proc {
    super::gateway(config_with(local_auth("memory"))).await
}
