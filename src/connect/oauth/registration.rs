//! Which client the bridge is at the authorization server: pre-registered
//! (`--client-id`), a Client ID Metadata Document URL where supported, or
//! registered now by dynamic client registration (RFC 7591).

use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::Auth;
use super::discovery::Discovery;
use crate::connect::cache::Client;
use crate::connect::trace::Traced;
use crate::connect::util::check_secure;
use crate::oauth::client::{DEVICE_CODE_GRANT, EndpointError, provider_error_text};

/// Why the bridge has no client at the authorization server. Registration
/// sends no secret, and what the server answers is shown only through
/// `provider_error_text`.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(
        "the authorization server {issuer} offers no dynamic client registration; register a client there with the redirect URI http://127.0.0.1:PORT/callback and pass --client-id (and --client-secret if it has one) with --callback-port PORT"
    )]
    Unsupported { issuer: String },
    #[error("the registration endpoint of {issuer} is not a URL: {source}")]
    EndpointNotUrl {
        issuer: String,
        source: url::ParseError,
    },
    #[error(transparent)]
    Insecure(#[from] EndpointError),
    #[error("registering at {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("{endpoint} refused to register this client ({status}): {reason}")]
    Refused {
        endpoint: String,
        status: reqwest::StatusCode,
        reason: String,
    },
    #[error("{endpoint} answered the registration with something that is not a client ({source})")]
    NotAClient {
        endpoint: String,
        source: serde_json::Error,
    },
}

impl Auth {
    /// Which client to be: pre-registered, a metadata document URL, or registered
    /// now (RFC 7591).
    ///
    /// A dynamic client is registered anew for every interactive sign-in: a cached
    /// client id the server has forgotten would otherwise end on the server's
    /// error page (it must not redirect to an unknown client), where the bridge
    /// cannot see it and would wait for nothing. Sign-ins are rare, and servers
    /// such as mcpgate hand the same public client its old id back.
    pub(super) async fn client_for(
        &self,
        d: &Discovery,
        redirect_uri: &str,
    ) -> Result<Client, RegistrationError> {
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
            return Err(RegistrationError::Unsupported { issuer });
        };
        let endpoint =
            Url::parse(endpoint).map_err(|source| RegistrationError::EndpointNotUrl {
                issuer: issuer.clone(),
                source,
            })?;
        check_secure(&endpoint, self.opts.allow_http, "the registration endpoint")?;
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
            .map_err(|source| RegistrationError::Unreachable {
                endpoint: endpoint.to_string(),
                source,
            })?;
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
            return Err(RegistrationError::Refused {
                endpoint: endpoint.to_string(),
                status,
                reason: provider_error_text(&bytes, &[]),
            });
        }
        let r: Registered =
            serde_json::from_slice(&bytes).map_err(|source| RegistrationError::NotAClient {
                endpoint: endpoint.to_string(),
                source,
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
}
