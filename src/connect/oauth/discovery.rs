//! Discovery (MCP authorization, 2025-11-25): from the server's 401 to the
//! protected resource metadata (RFC 9728) and the authorization server's
//! metadata (RFC 8414, OpenID discovery), with the checks that decide whether
//! the bridge signs in there at all: the resource must be this server, the
//! issuer the one named, PKCE S256 offered, endpoints https (or loopback).

use serde::Deserialize;
use url::Url;

use super::{Auth, Inner};
use crate::connect::trace::Traced;
use crate::connect::util::{Challenge, check_secure};
use crate::oauth::client::EndpointError;

/// Why the bridge does not sign in where the server points it. Names the URL
/// and the rule; metadata holds no secrets.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "the protected resource metadata at {metadata} is for {resource}, not for {server}; refusing to sign in there (a server may not send you to another resource's authorization)"
    )]
    ForeignResource {
        metadata: String,
        resource: String,
        server: String,
    },
    #[error("the authorization server {issuer:?} named by {server} is not a URL: {source}")]
    IssuerNotUrl {
        issuer: String,
        server: String,
        source: url::ParseError,
    },
    /// Plain http where secrets would travel (the message names the fix).
    #[error(transparent)]
    Insecure(#[from] EndpointError),
    #[error(
        "the authorization server metadata at {metadata} names the issuer {found:?}, not {issuer:?}; refusing to use it (RFC 8414 section 3.3: it may be an impersonation)"
    )]
    IssuerMismatch {
        metadata: String,
        found: String,
        issuer: String,
    },
    #[error(
        "the authorization server {issuer} does not advertise PKCE with S256 (code_challenge_methods_supported), which MCP requires; refusing to sign in there"
    )]
    NoS256 { issuer: String },
    #[error("the {what} {endpoint:?} of {issuer} is not a URL: {source}")]
    EndpointNotUrl {
        what: &'static str,
        endpoint: String,
        issuer: String,
        source: url::ParseError,
    },
    #[error(
        "no authorization server metadata for {issuer} (tried {tried}); the server {server} cannot be signed in to"
    )]
    NoMetadata {
        issuer: String,
        tried: String,
        server: String,
    },
}

/// Authorization server metadata (RFC 8414); only what the bridge uses.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct AsMeta {
    pub(super) issuer: String,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: String,
    #[serde(default)]
    pub(super) registration_endpoint: Option<String>,
    #[serde(default)]
    pub(super) code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(super) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(super) client_id_metadata_document_supported: Option<bool>,
    #[serde(default)]
    pub(super) authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    pub(super) device_authorization_endpoint: Option<String>,
}

/// Protected resource metadata (RFC 9728).
#[derive(Clone, Debug, Deserialize)]
struct ResourceMeta {
    #[serde(default)]
    pub(super) resource: Option<String>,
    #[serde(default)]
    pub(super) authorization_servers: Vec<String>,
    #[serde(default)]
    pub(super) scopes_supported: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub(super) struct Discovery {
    pub(super) resource: String,
    pub(super) meta: AsMeta,
    /// `meta.token_endpoint`, parsed and checked.
    pub(super) token_endpoint: Url,
    pub(super) scopes_supported: Option<Vec<String>>,
}

impl Auth {
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
    pub(super) async fn discover(
        &self,
        inner: &mut Inner,
        ch: &Challenge,
    ) -> Result<Discovery, DiscoveryError> {
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
                    return Err(DiscoveryError::ForeignResource {
                        metadata: url.to_string(),
                        resource,
                        server: self.server.to_string(),
                    });
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
        let token_endpoint =
            Url::parse(&meta.token_endpoint).map_err(|source| DiscoveryError::EndpointNotUrl {
                what: "token endpoint",
                endpoint: meta.token_endpoint.clone(),
                issuer: issuer.clone(),
                source,
            })?;
        let d = Discovery {
            resource,
            meta,
            token_endpoint,
            scopes_supported,
        };
        inner.discovery = Some(d.clone());
        Ok(d)
    }

    async fn as_metadata(&self, issuer: &str) -> Result<AsMeta, DiscoveryError> {
        let base = Url::parse(issuer).map_err(|source| DiscoveryError::IssuerNotUrl {
            issuer: issuer.to_string(),
            server: self.server.to_string(),
            source,
        })?;
        check_secure(&base, self.opts.allow_http, "the authorization server")?;
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
                return Err(DiscoveryError::IssuerMismatch {
                    metadata: url.to_string(),
                    found: meta.issuer,
                    issuer: issuer.to_string(),
                });
            }
            let s256 = meta
                .code_challenge_methods_supported
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m == "S256"));
            if !s256 {
                return Err(DiscoveryError::NoS256 {
                    issuer: issuer.to_string(),
                });
            }
            for (what, endpoint) in [
                ("authorization endpoint", &meta.authorization_endpoint),
                ("token endpoint", &meta.token_endpoint),
            ] {
                let u = Url::parse(endpoint).map_err(|source| DiscoveryError::EndpointNotUrl {
                    what,
                    endpoint: endpoint.clone(),
                    issuer: issuer.to_string(),
                    source,
                })?;
                check_secure(&u, self.opts.allow_http, &format!("the {what}"))?;
            }
            return Ok(meta);
        }
        Err(DiscoveryError::NoMetadata {
            issuer: issuer.to_string(),
            tried: candidates
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            server: self.server.to_string(),
        })
    }
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
