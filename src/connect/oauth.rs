//! The client side of the MCP authorization spec (2025-11-25): discovery from a
//! 401, client registration, the authorization code flow with PKCE, refresh,
//! step-up, all shared through the token cache.
//!
//! Bounds, so a misbehaving server never makes the bridge open browser tabs in a
//! loop: a 401 leads to at most one refresh and one sign-in per request (the
//! transport counts), a token just issued by a sign-in that is refused again is an
//! error, `invalid_client` leads to one re-registration, and a step-up never asks
//! twice for scopes it already asked for.

use super::trace::Traced;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use url::Url;

use super::browser::{self, Callback};
use super::cache::{Cache, Client, Entry, Tokens};
use super::util::{Challenge, check_secure, scope_union, scopes_cover};
use crate::oauth::client::{
    self as oauth_client, AuthMethod, Credentials, DEVICE_CODE_GRANT, Grant, OAuthHttp, Pkce,
    Secret, TokenError, TokenRequest, TokenResponse, provider_error_text, random_secret,
};
use crate::util::now_ms;

/// The HTTP client's timeout (token requests included).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest token endpoint answer read: tokens are a few kB at most.
const MAX_TOKEN_ANSWER: usize = 1024 * 1024;

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_metadata_url: Option<String>,
    pub callback_port: Option<u16>,
    pub no_browser: bool,
    pub allow_http: bool,
    pub login_timeout: Duration,
}

/// Authorization server metadata (RFC 8414); only what the bridge uses.
#[derive(Clone, Debug, Deserialize)]
struct AsMeta {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    client_id_metadata_document_supported: Option<bool>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
}

/// Protected resource metadata (RFC 9728).
#[derive(Clone, Debug, Deserialize)]
struct ResourceMeta {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Discovery {
    resource: String,
    meta: AsMeta,
    /// `meta.token_endpoint`, parsed and checked.
    token_endpoint: Url,
    scopes_supported: Option<Vec<String>>,
}

/// Why a refresh did not give new tokens.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error("the cached client registration does not match the cached tokens")]
    NoClient,
    #[error("no refresh token")]
    NoRefreshToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token cache could not be written.
    #[error("{0}")]
    Cache(String),
}

impl RefreshError {
    /// Whether signing in again may help: the authorization server answered,
    /// and refused. Without an OAuth answer (network, 5xx) the grant may well
    /// be fine, and a browser tab would not help an unreachable server.
    fn sign_in_may_help(&self) -> bool {
        match self {
            RefreshError::NoClient => true,
            RefreshError::Token(e) => e.oauth_error().is_some(),
            RefreshError::NoRefreshToken | RefreshError::Cache(_) => false,
        }
    }
}

/// Token requests recorded in `--trace-file` like every other request.
fn traced_token_request(
    request: reqwest::RequestBuilder,
) -> Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>> {
    Box::pin(request.traced("oauth.token"))
}

pub struct Auth {
    http: reqwest::Client,
    /// The same client, for the token and device authorization endpoints.
    token_http: OAuthHttp,
    server: Url,
    cache: Cache,
    opts: Options,
    /// The tokens in use; read on every request without waiting for a sign-in.
    current: std::sync::Mutex<Option<Tokens>>,
    /// Held while discovering, refreshing or signing in: one at a time per process
    /// (the cache's file lock does the same across processes).
    inner: Mutex<Inner>,
    /// Whether the server has accepted anything since the last interactive sign-in.
    login_accepted: AtomicBool,
}

#[derive(Default)]
struct Inner {
    discovery: Option<Discovery>,
    /// The access token the last interactive sign-in of this process produced.
    fresh_from_login: Option<String>,
}

impl Auth {
    pub fn new(server: Url, cache: Cache, opts: Options) -> Result<Auth, String> {
        let http = reqwest::Client::builder()
            // Metadata must be served directly; a redirect on a token request
            // could carry a code or secret to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let entry = cache.load();
        let tokens = entry.tokens.filter(|_| entry.server == server.as_str());
        let token_http = OAuthHttp::with_client(http.clone(), HTTP_TIMEOUT, MAX_TOKEN_ANSWER)
            .sending_with(traced_token_request);
        Ok(Auth {
            http,
            token_http,
            server,
            cache,
            opts,
            current: std::sync::Mutex::new(tokens),
            inner: Mutex::new(Inner::default()),
            login_accepted: AtomicBool::new(true),
        })
    }

    fn current(&self) -> Option<Tokens> {
        self.current.lock().map(|c| c.clone()).unwrap_or(None)
    }

    fn set_current(&self, tokens: Option<Tokens>) {
        if let Ok(mut c) = self.current.lock() {
            *c = tokens;
        }
    }

    /// The server accepted a request made with our token.
    pub fn accepted(&self) {
        self.login_accepted.store(true, Ordering::SeqCst);
    }

    /// The access token held now, as it is (for the final DELETE).
    pub fn bearer_cached(&self) -> Option<String> {
        self.current().map(|t| t.access_token)
    }

    /// The access token to send now, refreshed first when it is about to expire.
    /// `None` until the server asks for one.
    pub async fn bearer(&self) -> Result<Option<String>, String> {
        match self.current() {
            None => Ok(None),
            Some(t) if !t.needs_refresh(now_ms()) => Ok(Some(t.access_token)),
            Some(t) => {
                self.renew(Some(&t.access_token), None, true).await?;
                Ok(self.current().map(|t| t.access_token))
            }
        }
    }

    /// The server answered 401 to a request sent with `sent`.
    pub async fn unauthorized(
        &self,
        sent: Option<&str>,
        challenge: Option<Challenge>,
    ) -> Result<(), String> {
        self.renew(sent, challenge, false).await
    }

    /// The server answered 403 `insufficient_scope`: sign in again asking for the
    /// union of the scopes held and the scopes it names.
    pub async fn step_up(&self, sent: Option<&str>, challenge: Challenge) -> Result<(), String> {
        let mut inner = self.inner.lock().await;
        let current = self.current();
        if current.as_ref().map(|t| t.access_token.as_str()) != sent && current.is_some() {
            return Ok(());
        }
        let held = current.as_ref().and_then(|t| t.scope.clone());
        if scopes_cover(held.as_deref(), challenge.scope.as_deref()) {
            return Err(format!(
                "{} refuses this request for lack of scope ({}), and signing in again already asked for {}; the account may not be allowed that scope, ask the server's administrator",
                self.server,
                challenge.scope.as_deref().unwrap_or("no scope named"),
                held.as_deref().unwrap_or("no scope")
            ));
        }
        let wanted = scope_union(held.as_deref(), challenge.scope.as_deref());
        eprintln!(
            "mcpgate connect: {} needs more permissions ({}); signing in again",
            self.server,
            wanted.as_deref().unwrap_or("")
        );
        let _flock = self.cache.lock().await?;
        self.login(&mut inner, challenge, wanted).await
    }

    async fn renew(
        &self,
        sent: Option<&str>,
        challenge: Option<Challenge>,
        expiring: bool,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock().await;
        let usable =
            |t: &Tokens| Some(t.access_token.as_str()) != sent && !t.needs_refresh(now_ms());
        if self.current().as_ref().is_some_and(usable) {
            return Ok(()); // another request of ours renewed it while we waited
        }
        // A token from a sign-in that the server never accepted: signing in again
        // would only open another browser tab for the same answer.
        if !expiring
            && sent.is_some()
            && inner.fresh_from_login.as_deref() == sent
            && !self.login_accepted.load(Ordering::SeqCst)
        {
            return Err(format!(
                "{} refuses the token its authorization server issued moments ago; the account may lack access to this server, or the server and its authorization server disagree (check the server's logs)",
                self.server
            ));
        }
        let _flock = self.cache.lock().await?;
        // Another process may have refreshed or signed in while we waited.
        let entry = self.cache.load();
        if entry.server == self.server.as_str()
            && let Some(t) = entry.tokens.clone().filter(|t| usable(t))
        {
            self.set_current(Some(t));
            return Ok(());
        }
        let challenge = challenge.unwrap_or_default();
        // The cache is written under the lock, so it is at least as new as what
        // this process holds: refreshing with an older, rotated refresh token
        // would make the server revoke the whole family.
        let held = entry
            .tokens
            .clone()
            .filter(|_| entry.server == self.server.as_str())
            .or(self.current());
        let held_scope = held.as_ref().and_then(|t| t.scope.clone());
        if let Some(held) = held.filter(|t| t.refresh_token.is_some()) {
            let d = self.discover(&mut inner, &challenge).await?;
            match self.refresh(&d, &held).await {
                Ok(()) => return Ok(()),
                Err(e) if !e.sign_in_may_help() => return Err(e.to_string()),
                Err(e) => {
                    if let RefreshError::Token(t) = &e
                        && t.oauth_error() == Some("invalid_client")
                    {
                        self.forget_client();
                    }
                    eprintln!("mcpgate connect: {e}; signing in again");
                }
            }
        }
        let scope = challenge.scope.clone().or(held_scope);
        self.login(&mut inner, challenge, scope).await
    }

    fn forget_client(&self) {
        let mut entry = self.cache.load();
        entry.client = None;
        entry.tokens = None;
        entry.server = self.server.to_string();
        let _ = self.cache.save(&entry);
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &Url) -> Option<T> {
        let resp = self
            .http
            .get(url.clone())
            .header("accept", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .traced("oauth.discovery")
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// 401 -> protected resource metadata -> authorization server metadata.
    async fn discover(&self, inner: &mut Inner, ch: &Challenge) -> Result<Discovery, String> {
        if let Some(d) = &inner.discovery
            && ch.resource_metadata.is_none()
        {
            return Ok(d.clone());
        }
        let mut candidates = Vec::new();
        if let Some(rm) = &ch.resource_metadata {
            match Url::parse(rm) {
                Ok(u) => candidates.push(u),
                Err(e) => eprintln!(
                    "mcpgate connect: ignoring the resource_metadata {rm:?} of the server's challenge: {e}"
                ),
            }
        }
        let path = self.server.path().trim_end_matches('/');
        let mut well_known = self.server.clone();
        well_known.set_query(None);
        well_known.set_fragment(None);
        if !path.is_empty() {
            well_known.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
            candidates.push(well_known.clone());
        }
        well_known.set_path("/.well-known/oauth-protected-resource");
        candidates.push(well_known);

        let mut prm = None;
        for url in candidates {
            if check_secure(&url, self.opts.allow_http, "resource metadata").is_err() {
                continue;
            }
            if let Some(m) = self.get_json::<ResourceMeta>(&url).await
                && !m.authorization_servers.is_empty()
            {
                prm = Some((url, m));
                break;
            }
        }
        let (issuer, resource, scopes_supported) = match prm {
            Some((url, m)) => {
                let resource = m
                    .resource
                    .clone()
                    .unwrap_or_else(|| self.server.to_string());
                if !resource_covers(&resource, &self.server) {
                    return Err(format!(
                        "the protected resource metadata at {url} is for {resource}, not for {}; refusing to sign in there (a server may not send you to another resource's authorization)",
                        self.server
                    ));
                }
                (
                    m.authorization_servers[0].clone(),
                    resource,
                    m.scopes_supported,
                )
            }
            // Servers of the 2025-03-26 spec: the authorization server is the
            // server's origin.
            None => {
                let mut origin = self.server.clone();
                origin.set_path("");
                origin.set_query(None);
                (
                    origin.as_str().trim_end_matches('/').to_string(),
                    self.server.to_string(),
                    None,
                )
            }
        };
        let meta = self.as_metadata(&issuer).await?;
        // as_metadata checked it already.
        let token_endpoint = Url::parse(&meta.token_endpoint)
            .map_err(|e| format!("the token endpoint of {issuer} is not a URL: {e}"))?;
        let d = Discovery {
            resource,
            meta,
            token_endpoint,
            scopes_supported,
        };
        inner.discovery = Some(d.clone());
        Ok(d)
    }

    async fn as_metadata(&self, issuer: &str) -> Result<AsMeta, String> {
        let base = Url::parse(issuer).map_err(|e| {
            format!(
                "the authorization server {issuer:?} named by {} is not a URL: {e}",
                self.server
            )
        })?;
        check_secure(&base, self.opts.allow_http, "the authorization server")
            .map_err(|e| e.to_string())?;
        let path = base.path().trim_end_matches('/').to_string();
        let at = |p: String| {
            let mut u = base.clone();
            u.set_path(&p);
            u.set_query(None);
            u
        };
        // RFC 8414 section 3.1 and the MCP spec's order for issuers with a path.
        let candidates = if path.is_empty() {
            vec![
                at("/.well-known/oauth-authorization-server".into()),
                at("/.well-known/openid-configuration".into()),
            ]
        } else {
            vec![
                at(format!("/.well-known/oauth-authorization-server{path}")),
                at(format!("/.well-known/openid-configuration{path}")),
                at(format!("{path}/.well-known/openid-configuration")),
            ]
        };
        for url in &candidates {
            let Some(meta) = self.get_json::<AsMeta>(url).await else {
                continue;
            };
            if meta.issuer != issuer {
                return Err(format!(
                    "the authorization server metadata at {url} names the issuer {:?}, not {issuer:?}; refusing to use it (RFC 8414 section 3.3: it may be an impersonation)",
                    meta.issuer
                ));
            }
            let s256 = meta
                .code_challenge_methods_supported
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m == "S256"));
            if !s256 {
                return Err(format!(
                    "the authorization server {issuer} does not advertise PKCE with S256 (code_challenge_methods_supported), which MCP requires; refusing to sign in there"
                ));
            }
            for (what, endpoint) in [
                ("authorization endpoint", &meta.authorization_endpoint),
                ("token endpoint", &meta.token_endpoint),
            ] {
                let u = Url::parse(endpoint).map_err(|e| {
                    format!("the {what} {endpoint:?} of {issuer} is not a URL: {e}")
                })?;
                check_secure(&u, self.opts.allow_http, &format!("the {what}"))
                    .map_err(|e| e.to_string())?;
            }
            return Ok(meta);
        }
        Err(format!(
            "no authorization server metadata for {issuer} (tried {}); the server {} cannot be signed in to",
            candidates
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            self.server
        ))
    }

    /// Which client to be: pre-registered, a metadata document URL, or registered
    /// now (RFC 7591).
    ///
    /// A dynamic client is registered anew for every interactive sign-in: a cached
    /// client id the server has forgotten would otherwise end on the server's
    /// error page (it must not redirect to an unknown client), where the bridge
    /// cannot see it and would wait for nothing. Sign-ins are rare, and servers
    /// such as mcpgate hand the same public client its old id back.
    async fn client_for(&self, d: &Discovery, redirect_uri: &str) -> Result<Client, String> {
        let issuer = d.meta.issuer.clone();
        if let Some(id) = &self.opts.client_id {
            let auth_method = match &self.opts.client_secret {
                None => "none",
                Some(_) => {
                    let m = d
                        .meta
                        .token_endpoint_auth_methods_supported
                        .as_deref()
                        .unwrap_or(&[]);
                    if m.iter().any(|m| m == "client_secret_post")
                        && !m.iter().any(|m| m == "client_secret_basic")
                    {
                        "client_secret_post"
                    } else {
                        "client_secret_basic"
                    }
                }
            };
            return Ok(Client {
                client_id: id.clone(),
                client_secret: self.opts.client_secret.clone(),
                auth_method: auth_method.into(),
                issuer,
                kind: "pre-registered".into(),
                redirect_uri: None,
            });
        }
        if let Some(url) = &self.opts.client_metadata_url
            && d.meta.client_id_metadata_document_supported == Some(true)
        {
            return Ok(Client {
                client_id: url.clone(),
                client_secret: None,
                auth_method: "none".into(),
                issuer,
                kind: "metadata-document".into(),
                redirect_uri: None,
            });
        }
        let Some(endpoint) = &d.meta.registration_endpoint else {
            return Err(format!(
                "the authorization server {issuer} offers no dynamic client registration; register a client there with the redirect URI http://127.0.0.1:PORT/callback and pass --client-id (and --client-secret if it has one) with --callback-port PORT"
            ));
        };
        let endpoint = Url::parse(endpoint)
            .map_err(|e| format!("the registration endpoint of {issuer} is not a URL: {e}"))?;
        check_secure(&endpoint, self.opts.allow_http, "the registration endpoint")
            .map_err(|e| e.to_string())?;
        let supported = d.meta.token_endpoint_auth_methods_supported.as_deref();
        let method = match supported {
            None => "none",
            Some(m) if m.iter().any(|m| m == "none") => "none",
            Some(m) if m.iter().any(|m| m == "client_secret_basic") => "client_secret_basic",
            Some(m) if m.iter().any(|m| m == "client_secret_post") => "client_secret_post",
            Some(_) => "none",
        };
        let mut grant_types = vec!["authorization_code", "refresh_token"];
        if self.device_flow(d) {
            grant_types.push(DEVICE_CODE_GRANT);
        }
        let body = json!({
            "client_name": "mcpgate connect",
            "redirect_uris": [redirect_uri],
            "grant_types": grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "application_type": "native",
        });
        let resp = self
            .http
            .post(endpoint.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_string())
            .traced("oauth.register")
            .await
            .map_err(|e| format!("registering at {endpoint}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        #[derive(Deserialize)]
        struct Registered {
            client_id: String,
            #[serde(default)]
            client_secret: Option<String>,
            #[serde(default)]
            token_endpoint_auth_method: Option<String>,
        }
        if !status.is_success() {
            return Err(format!(
                "{endpoint} refused to register this client ({status}): {}",
                provider_error_text(&bytes, &[])
            ));
        }
        let r: Registered = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{endpoint} answered the registration with something that is not a client ({e})"
            )
        })?;
        let client = Client {
            client_id: r.client_id,
            client_secret: r.client_secret,
            auth_method: r
                .token_endpoint_auth_method
                .unwrap_or_else(|| method.to_string()),
            issuer,
            kind: "dynamic".into(),
            redirect_uri: Some(redirect_uri.to_string()),
        };
        eprintln!(
            "mcpgate connect: registered as a client of {}",
            client.issuer
        );
        Ok(client)
    }

    /// The interactive part: authorization code + PKCE through a browser.
    async fn login(
        &self,
        inner: &mut Inner,
        challenge: Challenge,
        scope: Option<String>,
    ) -> Result<(), String> {
        let d = self.discover(inner, &challenge).await?;
        let scope = scope.or_else(|| challenge_scope(&challenge, &d));
        // Before any browser opens: a busy port must not cost a tab.
        let callback = Callback::bind(self.opts.callback_port).await?;
        let mut reregistered = false;
        loop {
            let client = self.client_for(&d, &callback.redirect_uri).await?;
            let mut entry = self.cache.load();
            if entry.server != self.server.as_str() {
                entry = Entry {
                    server: self.server.to_string(),
                    ..Entry::default()
                };
            }
            entry.client = Some(client.clone());
            self.cache.save(&entry)?;

            if self.device_flow(&d) {
                return self.device_login(inner, &d, &client, scope).await;
            }
            let pkce = Pkce::generate();
            let state = random_secret();
            let mut url = Url::parse(&d.meta.authorization_endpoint).map_err(|e| {
                format!(
                    "the authorization endpoint of {} is not a URL: {e}",
                    d.meta.issuer
                )
            })?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("response_type", "code")
                    .append_pair("client_id", &client.client_id)
                    .append_pair("redirect_uri", &callback.redirect_uri)
                    .append_pair("state", &state)
                    .append_pair("code_challenge", &pkce.challenge)
                    .append_pair("code_challenge_method", Pkce::METHOD)
                    .append_pair("resource", &d.resource);
                if let Some(s) = &scope {
                    q.append_pair("scope", s);
                }
            }
            eprintln!(
                "mcpgate connect: sign in to use {} at this address:\n\n  {url}\n",
                self.server
            );
            let timeout = self.opts.login_timeout;
            let waited = async {
                tokio::time::timeout(timeout, callback.wait(&state))
                    .await
                    .map_err(|_| {
                        format!(
                            "nobody finished signing in within {}s; run again (and check that a browser opened), or use --no-browser",
                            timeout.as_secs()
                        )
                    })?
            };
            let params = if self.opts.no_browser {
                // The browser may well be on this machine after all: whichever
                // comes first, the callback or the pasted URL.
                let pasted = async {
                    match browser::read_pasted_redirect(&state).await {
                        Ok(p) => Ok::<_, String>(p),
                        Err(e) => {
                            eprintln!("mcpgate connect: {e}");
                            std::future::pending().await
                        }
                    }
                };
                tokio::select! {
                    r = pasted => r?,
                    r = waited => r?,
                }
            } else {
                match browser::open(url.as_str()) {
                    Ok(program) => eprintln!(
                        "mcpgate connect: opened it with {program}; waiting for the sign-in to finish"
                    ),
                    Err(e) => eprintln!(
                        "mcpgate connect: {e}; open the address above yourself (or use --no-browser on a machine without one)"
                    ),
                }
                waited.await?
            };
            let code = self.check_redirect(&d.meta, &params)?;
            let grant = Grant::AuthorizationCode {
                code: &code,
                redirect_uri: &callback.redirect_uri,
                verifier: pkce.verifier.expose(),
            };
            match self.request_token(&d, &client, grant).await {
                Ok(answer) => {
                    let tokens = tokens_from(answer, &d, &client, scope.clone(), None);
                    inner.fresh_from_login = Some(tokens.access_token.clone());
                    self.login_accepted.store(false, Ordering::SeqCst);
                    self.store(tokens)?;
                    eprintln!("mcpgate connect: signed in to {}", self.server);
                    return Ok(());
                }
                Err(e)
                    if e.oauth_error() == Some("invalid_client")
                        && client.kind == "dynamic"
                        && !reregistered =>
                {
                    eprintln!(
                        "mcpgate connect: {} no longer knows this client ({e}); registering again",
                        d.meta.issuer
                    );
                    reregistered = true;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Headless, and the server offers the device authorization grant (RFC 8628):
    /// better than pasting URLs around.
    fn device_flow(&self, d: &Discovery) -> bool {
        self.opts.no_browser && d.meta.device_authorization_endpoint.is_some()
    }

    async fn device_login(
        &self,
        inner: &mut Inner,
        d: &Discovery,
        client: &Client,
        scope: Option<String>,
    ) -> Result<(), String> {
        let endpoint = d
            .meta
            .device_authorization_endpoint
            .clone()
            .unwrap_or_default();
        let endpoint = Url::parse(&endpoint).map_err(|e| {
            format!(
                "the device authorization endpoint of {} is not a URL: {e}",
                d.meta.issuer
            )
        })?;
        check_secure(
            &endpoint,
            self.opts.allow_http,
            "the device authorization endpoint",
        )
        .map_err(|e| e.to_string())?;
        let started = oauth_client::request_device_authorization(
            &self.token_http,
            &endpoint,
            &credentials(client),
            scope.as_deref(),
            Some(&d.resource),
        )
        .await
        .map_err(|e| e.to_string())?;
        let user_code = &started.user_code;
        let verification = started.verification_uri.as_deref().unwrap_or_default();
        eprintln!(
            "mcpgate connect: to sign in to {}, open {verification} on any device and enter the code {user_code}",
            self.server
        );
        if let Some(complete) = &started.verification_uri_complete {
            eprintln!("mcpgate connect: (or open {complete} directly)");
        }
        let mut interval = Duration::from_secs(started.interval.unwrap_or(5).max(1));
        let lifetime = started
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(self.opts.login_timeout)
            .min(self.opts.login_timeout);
        let deadline = tokio::time::Instant::now() + lifetime;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "nobody entered the code {user_code} within {}s; run again to get a new one",
                    lifetime.as_secs()
                ));
            }
            let grant = Grant::DeviceCode {
                device_code: started.device_code.expose(),
            };
            match self.request_token(d, client, grant).await {
                Ok(answer) => {
                    let tokens = tokens_from(answer, d, client, scope, None);
                    inner.fresh_from_login = Some(tokens.access_token.clone());
                    self.login_accepted.store(false, Ordering::SeqCst);
                    self.store(tokens)?;
                    eprintln!("mcpgate connect: signed in to {}", self.server);
                    return Ok(());
                }
                Err(e) if e.oauth_error() == Some("authorization_pending") => {}
                // RFC 8628 section 3.5: slow down by five seconds.
                Err(e) if e.oauth_error() == Some("slow_down") => {
                    interval += Duration::from_secs(5);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn check_redirect(
        &self,
        meta: &AsMeta,
        params: &HashMap<String, String>,
    ) -> Result<String, String> {
        if let Some(err) = params.get("error") {
            return Err(format!(
                "the authorization server did not grant access: {err}{}",
                params
                    .get("error_description")
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
        // RFC 9207: a mix-up attack shows as a response from another issuer.
        match params.get("iss") {
            Some(iss) if iss != &meta.issuer => {
                return Err(format!(
                    "the sign-in answer comes from the issuer {iss:?}, not {:?}; refusing it (RFC 9207 mix-up protection)",
                    meta.issuer
                ));
            }
            None if meta.authorization_response_iss_parameter_supported == Some(true) => {
                return Err(format!(
                    "{} promises an iss parameter in its answers, and this one has none; refusing it (RFC 9207)",
                    meta.issuer
                ));
            }
            _ => {}
        }
        params
            .get("code")
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or_else(|| "the sign-in answer has no authorization code".to_string())
    }

    async fn refresh(&self, d: &Discovery, held: &Tokens) -> Result<(), RefreshError> {
        let entry = self.cache.load();
        let client = entry
            .client
            .filter(|c| c.client_id == held.client_id && c.issuer == d.meta.issuer)
            .ok_or(RefreshError::NoClient)?;
        let refresh_token = held
            .refresh_token
            .clone()
            .ok_or(RefreshError::NoRefreshToken)?;
        let grant = Grant::RefreshToken {
            refresh_token: &refresh_token,
        };
        let answer = self.request_token(d, &client, grant).await?;
        let tokens = tokens_from(
            answer,
            d,
            &client,
            held.scope.clone(),
            Some(refresh_token.clone()),
        );
        self.store(tokens).map_err(RefreshError::Cache)?;
        Ok(())
    }

    fn store(&self, tokens: Tokens) -> Result<(), String> {
        let mut entry = self.cache.load();
        if entry.server != self.server.as_str() {
            entry = Entry {
                server: self.server.to_string(),
                ..Entry::default()
            };
        }
        entry.tokens = Some(tokens.clone());
        self.cache.save(&entry)?;
        self.set_current(Some(tokens));
        Ok(())
    }

    /// Redeem a grant at the token endpoint, for the resource this bridge serves.
    async fn request_token(
        &self,
        d: &Discovery,
        client: &Client,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, TokenError> {
        let request = TokenRequest {
            endpoint: &d.token_endpoint,
            client: credentials(client),
            grant,
            resource: Some(&d.resource),
        };
        oauth_client::request_token(&self.token_http, &request).await
    }
}

/// How a cached client authenticates: as registered, and as a public client
/// when it has no secret.
fn credentials(client: &Client) -> Credentials<'_> {
    Credentials {
        client_id: &client.client_id,
        client_secret: client.client_secret.as_deref(),
        method: AuthMethod::from_name(&client.auth_method),
    }
}

/// What the bridge keeps of a token response. `old_refresh`: the refresh token
/// just used, kept when the server did not rotate it.
fn tokens_from(
    answer: TokenResponse,
    d: &Discovery,
    client: &Client,
    scope: Option<String>,
    old_refresh: Option<String>,
) -> Tokens {
    let lifetime = answer.expires_in.map(|s| s.saturating_mul(1000));
    Tokens {
        access_token: answer.access_token.into_inner(),
        refresh_token: answer.refresh_token.map(Secret::into_inner).or(old_refresh),
        expires_at: lifetime.map(|l| now_ms().saturating_add(l)),
        lifetime,
        scope,
        issuer: d.meta.issuer.clone(),
        client_id: client.client_id.clone(),
        resource: d.resource.clone(),
    }
}

/// The spec's scope choice: the challenge's, else what the resource supports,
/// else none.
fn challenge_scope(ch: &Challenge, d: &Discovery) -> Option<String> {
    ch.scope
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            d.scopes_supported
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.join(" "))
        })
}

/// A resource identifier covers the server when it has the same origin and its
/// path is a prefix of the server's, segment by segment.
fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(r) = Url::parse(resource) else {
        return false;
    };
    if r.origin() != server.origin() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let sp = server.path().trim_end_matches('/');
    sp == rp || sp.starts_with(&format!("{rp}/")) || rp.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_prefix_rules() {
        let s = Url::parse("http://localhost:3000/mcp").expect("url");
        assert!(resource_covers("http://localhost:3000/mcp", &s));
        assert!(resource_covers("http://localhost:3000", &s));
        assert!(resource_covers("http://localhost:3000/", &s));
        assert!(!resource_covers("https://evil.example.com/mcp", &s));
        assert!(!resource_covers("http://localhost:3000/mc", &s));
        assert!(!resource_covers("http://localhost:3001/mcp", &s));
    }
}
