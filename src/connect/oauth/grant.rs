//! The interactive sign-in: the authorization code grant with PKCE through a
//! browser (or a URL pasted on a headless machine), or the device
//! authorization grant (RFC 8628), and the checks of the redirect that comes
//! back (`state`, RFC 9207 `iss`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use url::Url;

use super::discovery::{AsMeta, Discovery};
use super::{Auth, Inner, credentials, tokens_from};
use crate::connect::browser::{self, Callback};
use crate::connect::cache::{Client, Entry};
use crate::connect::util::{Challenge, check_secure};
use crate::oauth::client::{self as oauth_client, Grant, Pkce, random_secret};

impl Auth {
    /// The interactive part: authorization code + PKCE through a browser.
    pub(super) async fn login(
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
