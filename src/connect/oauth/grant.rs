//! The interactive sign-in: the authorization code grant with PKCE through a
//! browser (or a URL pasted on a headless machine), or the device
//! authorization grant (RFC 8628), and the checks of the redirect that comes
//! back (`state`, RFC 9207 `iss`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use url::Url;

use super::discovery::{AsMeta, Discovery};
use super::{Auth, AuthError, Inner, credentials, tokens_from};
use crate::connect::browser::{self, Callback};
use crate::connect::cache::{Client, Entry};
use crate::connect::util::{Challenge, check_secure};
use crate::oauth::client::{self as oauth_client, Grant, Pkce, provider_text, random_secret};

/// Why a sign-in did not end with a code (or device tokens). Never holds the
/// code, the verifier or the device code; what the authorization server put
/// in its redirect is shown cleaned (control characters, length).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("the {what} of {issuer} is not a URL: {source}")]
    EndpointNotUrl {
        what: &'static str,
        issuer: String,
        source: url::ParseError,
    },
    #[error(
        "nobody finished signing in within {secs}s; run again (and check that a browser opened), or use --no-browser"
    )]
    Timeout { secs: u64 },
    /// The user code is what the person was shown to type; it has expired.
    #[error("nobody entered the code {user_code} within {secs}s; run again to get a new one")]
    DeviceTimeout { user_code: String, secs: u64 },
    #[error(
        "the authorization server did not grant access: {error}{}",
        describe(description)
    )]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error(
        "the sign-in answer comes from the issuer {iss:?}, not {issuer:?}; refusing it (RFC 9207 mix-up protection)"
    )]
    WrongIssuer { iss: String, issuer: String },
    #[error(
        "{issuer} promises an iss parameter in its answers, and this one has none; refusing it (RFC 9207)"
    )]
    NoIssuer { issuer: String },
    #[error("the sign-in answer has no authorization code")]
    NoCode,
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl Auth {
    /// The interactive part: authorization code + PKCE through a browser.
    pub(super) async fn login(
        &self,
        inner: &mut Inner,
        challenge: Challenge,
        scope: Option<String>,
    ) -> Result<(), AuthError> {
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
            let mut url = Url::parse(&d.meta.authorization_endpoint).map_err(|source| {
                GrantError::EndpointNotUrl {
                    what: "authorization endpoint",
                    issuer: d.meta.issuer.clone(),
                    source,
                }
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
                match tokio::time::timeout(timeout, callback.wait(&state)).await {
                    Ok(params) => Ok::<_, AuthError>(params?),
                    Err(_) => Err(GrantError::Timeout {
                        secs: timeout.as_secs(),
                    }
                    .into()),
                }
            };
            let params = if self.opts.no_browser {
                // The browser may well be on this machine after all: whichever
                // comes first, the callback or the pasted URL.
                let pasted = async {
                    match browser::read_pasted_redirect(&state).await {
                        Ok(p) => Ok::<_, AuthError>(p),
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
            let code = check_redirect(&d.meta, &params)?;
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
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn device_login(
        &self,
        inner: &mut Inner,
        d: &Discovery,
        client: &Client,
        scope: Option<String>,
    ) -> Result<(), AuthError> {
        let endpoint = d
            .meta
            .device_authorization_endpoint
            .clone()
            .unwrap_or_default();
        let endpoint = Url::parse(&endpoint).map_err(|source| GrantError::EndpointNotUrl {
            what: "device authorization endpoint",
            issuer: d.meta.issuer.clone(),
            source,
        })?;
        check_secure(
            &endpoint,
            self.opts.allow_http,
            "the device authorization endpoint",
        )?;
        let started = oauth_client::request_device_authorization(
            &self.token_http,
            &endpoint,
            &credentials(client),
            scope.as_deref(),
            Some(&d.resource),
        )
        .await?;
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
                return Err(GrantError::DeviceTimeout {
                    user_code: user_code.clone(),
                    secs: lifetime.as_secs(),
                }
                .into());
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
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The code of the redirect that came back, after the checks: an error from
/// the authorization server, and the issuer (RFC 9207). `state` was checked on
/// arrival.
fn check_redirect(meta: &AsMeta, params: &HashMap<String, String>) -> Result<String, GrantError> {
    if let Some(err) = params.get("error") {
        return Err(GrantError::Denied {
            error: provider_text(err, &[]).unwrap_or_else(|| "unknown_error".into()),
            description: params
                .get("error_description")
                .and_then(|d| provider_text(d, &[])),
        });
    }
    // RFC 9207: a mix-up attack shows as a response from another issuer.
    match params.get("iss") {
        Some(iss) if iss != &meta.issuer => {
            return Err(GrantError::WrongIssuer {
                iss: iss.clone(),
                issuer: meta.issuer.clone(),
            });
        }
        None if meta.authorization_response_iss_parameter_supported == Some(true) => {
            return Err(GrantError::NoIssuer {
                issuer: meta.issuer.clone(),
            });
        }
        _ => {}
    }
    params
        .get("code")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or(GrantError::NoCode)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(promises_iss: bool) -> AsMeta {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/authorize",
            "token_endpoint": "https://as.example/token",
            "authorization_response_iss_parameter_supported": promises_iss,
        }))
        .expect("metadata")
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn redirects_are_checked_and_errors_hold_no_code() {
        let ok = params(&[("code", "code-secret-1"), ("iss", "https://as.example")]);
        assert_eq!(
            check_redirect(&meta(true), &ok).expect("a code"),
            "code-secret-1"
        );
        let other = params(&[("code", "code-secret-1"), ("iss", "https://evil.example")]);
        let err = check_redirect(&meta(false), &other).expect_err("mix-up");
        assert!(err.to_string().contains("RFC 9207"), "{err}");
        assert!(!err.to_string().contains("code-secret-1"), "{err}");
        let no_iss = params(&[("code", "code-secret-1")]);
        assert!(check_redirect(&meta(false), &no_iss).is_ok());
        let err = check_redirect(&meta(true), &no_iss).expect_err("iss promised");
        assert!(!err.to_string().contains("code-secret-1"), "{err}");
        assert!(matches!(
            check_redirect(&meta(false), &params(&[("code", "")])),
            Err(GrantError::NoCode)
        ));
    }

    #[test]
    fn a_refusal_is_shown_clean() {
        let refused = params(&[
            ("error", "access_denied"),
            ("error_description", "no\r\nmcpgate connect: signed in"),
        ]);
        let err = check_redirect(&meta(false), &refused).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "the authorization server did not grant access: access_denied (nomcpgate connect: signed in)"
        );
    }
}
