//! GitHub (and GitHub Enterprise) OAuth apps.
//!
//! GitHub speaks OAuth 2.0 but not OpenID Connect: there is no ID token, so the
//! identity is read from the REST API with the access token just issued to us.
//! The email address is the account's primary one, and only if GitHub has
//! verified it; the `email` field of `/user` is the public profile address,
//! which the user may set to anything and which is not checked.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::error::IdpError;
use super::http::{UpstreamHttp, credentials, endpoint_url, exchange_code};
use super::{GithubSettings, Identity};
use crate::oauth::client::{AuthMethod, shown};

/// GitHub's page size limit; more organizations than this are fetched page by page.
const PER_PAGE: usize = 100;
/// Enough for anyone; a bound so that a misbehaving server cannot keep us paging.
const MAX_ORG_PAGES: usize = 10;
const API_ACCEPT: &str = "application/vnd.github+json";

/// A GitHub OAuth app. Cheap to clone.
#[derive(Clone)]
pub struct Github {
    inner: Arc<Inner>,
}

struct Inner {
    settings: GithubSettings,
    http: UpstreamHttp,
}

impl fmt::Debug for Github {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Github")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

impl Github {
    pub(super) fn new(settings: GithubSettings) -> Github {
        Github {
            inner: Arc::new(Inner {
                settings,
                http: UpstreamHttp::new(),
            }),
        }
    }

    pub(super) fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<Url, IdpError> {
        self.inner.authorize_url(redirect_uri, state, challenge)
    }

    pub(super) async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, IdpError> {
        self.inner.finish(redirect_uri, code, pkce_verifier).await
    }
}

impl Inner {
    // Plain http is allowed on loopback only: that is how tests run a stand-in
    // GitHub, and nothing sent to loopback leaves the machine.
    fn url(&self, what: &str, text: &str) -> Result<Url, IdpError> {
        endpoint_url(what, text, true).map_err(|e| IdpError::Config(e.to_string()))
    }

    fn api(&self, path: &str) -> Result<Url, IdpError> {
        let base = self.settings.api_url.trim().trim_end_matches('/');
        self.url("the GitHub API URL", &format!("{base}{path}"))
    }

    fn scope(&self) -> &'static str {
        if self.settings.read_orgs {
            "user:email read:org"
        } else {
            "user:email"
        }
    }

    fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<Url, IdpError> {
        let mut url = self.url("the GitHub authorize URL", &self.settings.authorize_url)?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", self.scope())
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, IdpError> {
        let token_url = self.url("the GitHub token URL", &self.settings.token_url)?;
        // GitHub takes the client secret in the body only.
        let tokens = exchange_code(
            &self.http,
            &token_url,
            credentials(
                &self.settings.client_id,
                &self.settings.client_secret,
                AuthMethod::Post,
            ),
            code,
            redirect_uri,
            pkce_verifier,
        )
        .await?;
        let token = tokens.access_token.expose();

        let user: User = self.get(&self.api("/user")?, token).await?;
        let emails: Vec<Email> = self.get(&self.api("/user/emails")?, token).await?;
        let Some(primary) = emails.iter().find(|e| e.primary) else {
            return Err(IdpError::NoEmail);
        };
        if !primary.verified {
            return Err(IdpError::EmailNotVerified {
                email: primary.email.trim().to_lowercase(),
            });
        }
        let email = primary.email.trim().to_lowercase();
        if !email.contains('@') {
            return Err(IdpError::NoEmail);
        }

        let orgs = if self.settings.read_orgs {
            self.orgs(token).await?
        } else {
            Vec::new()
        };

        Ok(Identity {
            provider: "github".into(),
            subject: user.id.to_string(),
            email,
            name: user
                .name
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .or(Some(user.login)),
            domain: None,
            groups: Vec::new(),
            orgs,
        })
    }

    async fn orgs(&self, token: &str) -> Result<Vec<String>, IdpError> {
        let mut orgs = Vec::new();
        for page in 1..=MAX_ORG_PAGES {
            let mut url = self.api("/user/orgs")?;
            url.query_pairs_mut()
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
            let batch: Vec<Org> = self.get(&url, token).await?;
            let full = batch.len() >= PER_PAGE;
            orgs.extend(batch.into_iter().map(|o| o.login.to_lowercase()));
            if !full {
                break;
            }
        }
        orgs.sort();
        orgs.dedup();
        Ok(orgs)
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        url: &Url,
        token: &str,
    ) -> Result<T, IdpError> {
        let request = self
            .http
            .client()?
            .get(url.clone())
            .header(reqwest::header::ACCEPT, API_ACCEPT)
            .header("X-GitHub-Api-Version", "2022-11-28")
            .bearer_auth(token);
        let answer = self.http.send(url, request).await?;
        let invalid = |reason: String| IdpError::InvalidResponse {
            url: shown(url),
            reason,
        };
        if !answer.status.is_success() {
            let hint = match answer.status.as_u16() {
                401 => " (the token was not accepted)",
                403 | 404 => {
                    " (was the scope granted? for organizations, has the org approved this OAuth app?)"
                }
                _ => "",
            };
            return Err(invalid(format!("HTTP {}{hint}", answer.status)));
        }
        serde_json::from_slice(&answer.body).map_err(|e| invalid(format!("unexpected JSON: {e}")))
    }
}
