//! The configuration file's shape. These types are also the source of the
//! generated JSON Schema (`config.schema.json`), so the docs cannot drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::auth::AuthConfig;
use super::duration::DurationStr;
use super::service::ServiceConfig;
use super::{IpRange, Problem, Service, Settings};
use crate::util::is_loopback;

/// The whole configuration file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Optional link to this schema, for editors.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// The MCP servers, by service name. Each is served at `/<name>/mcp` and `/<name>/sse`.
    #[serde(rename = "mcpServers")]
    pub mcp_servers: BTreeMap<String, ServiceConfig>,
    /// Who may use which tools, prompts and resources. A service that no rule
    /// names is open to everyone who may use the gateway; once a rule names
    /// it, whatever no rule grants is denied. Deny (`!`) wins over allow.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// One access rule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    /// Shown by `mcpgate policy explain`. Default `policies[N]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Who the rule is for: `"alice@corp.com"`, `"@corp.com"` (a verified
    /// domain: Google's Workspace domain, other providers' verified email
    /// domain), `"group:eng"` (a group or role from the identity provider, or a
    /// local user's `groups`), `"org:acme"` (a GitHub organization),
    /// `"service:ci-bot"` (a `serviceAuths` user), `"*"`.
    pub subjects: Vec<String>,
    /// What it grants or denies: `"service:glob"` over tool and prompt names
    /// and resource URIs (`"github:list_*"`, `"filesystem:*"`, or just
    /// `"time"`); a leading `!` denies (`"!filesystem:write_file"`).
    pub tools: Vec<String>,
}

/// The aggregated endpoint: every service's tools at `/mcp`, named
/// `<service><delimiter><tool>`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AggregateConfig {
    /// Serve `/mcp` and `/sse`. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Where it is served: `"/mcp"` (default; legacy SSE at `/sse`), or
    /// `"/<name>/mcp"` (legacy SSE at `/<name>/sse`), e.g. `"/all/mcp"`.
    #[serde(default)]
    pub path: Option<String>,
    /// The services at `/mcp`. Default: all of them.
    #[serde(default)]
    pub services: Option<Vec<String>>,
    /// Between the service name and the tool or prompt name. One to three of
    /// `A-Z a-z 0-9 _ - .`. Default `_`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// How long a service's lists are reused before they are asked again (a
    /// `list_changed` from the service refreshes them at once). Default `10m`.
    #[serde(default)]
    pub cache_ttl: Option<DurationStr>,
    /// Most items in one page of `tools/list` (and the other lists). Default 1000.
    #[serde(default)]
    pub page_size: Option<usize>,
    /// More aggregated endpoints, each with a subset of the services, at
    /// `/<group>/mcp` (e.g. `{"eng": {"services": ["github", "db"]}}`).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupConfig {
    pub services: Vec<String>,
}

/// Gateway-wide settings (mcp-front's `proxy` block).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Public URL of the gateway, e.g. `https://mcp.company.com` or
    /// `https://company.com/mcpgate`. Its path becomes the prefix of every route.
    /// Default: `http://<addr>`.
    #[serde(rename = "baseURL", default)]
    pub base_url: Option<String>,
    /// Listen address. Default `127.0.0.1:8080`. mcp-front's `":8080"` form is accepted
    /// and means all interfaces.
    #[serde(default)]
    pub addr: Option<String>,
    /// Name shown in logs and pages. Default `mcpgate`.
    #[serde(default)]
    pub name: Option<String>,
    /// Largest accepted request body in bytes. Default 4 MiB.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Browser origins allowed to call the MCP endpoints, besides the gateway's own
    /// origin and loopback origins (e.g. `https://inspector.example.com`). `"*"` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long children get between SIGTERM and SIGKILL on shutdown. Default `5s`.
    #[serde(default)]
    pub shutdown_grace: Option<DurationStr>,
    /// Reverse proxies (addresses or CIDR ranges, e.g. `"10.0.0.0/8"`) whose
    /// `X-Forwarded-For` is believed, so rate limits apply per client rather than
    /// per proxy. Default none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Sign-in and tokens: mcpgate as the OAuth 2.1 authorization server of every
    /// service. Without it the gateway only listens on loopback.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// The aggregated endpoint `/mcp` (and named groups of services).
    #[serde(default)]
    pub aggregate: Option<AggregateConfig>,
}

impl ProxyConfig {
    pub(super) fn validate(
        self,
        services: Vec<Service>,
        problems: &mut Vec<Problem>,
    ) -> Option<Settings> {
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                path: format!("proxy.{field}"),
                message,
            })
        };
        let addr_text = self
            .addr
            .unwrap_or_else(|| Settings::DEFAULT_ADDR.to_string());
        // mcp-front writes ":8080" for "all interfaces".
        let normalised = if addr_text.starts_with(':') {
            format!("0.0.0.0{addr_text}")
        } else {
            addr_text.clone()
        };
        let addr: Option<SocketAddr> = match normalised.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problem(
                    "addr",
                    format!("{addr_text:?} is not an address like \"127.0.0.1:8080\""),
                );
                None
            }
        };
        if let Some(a) = addr
            && !is_loopback(&a)
            && self.auth.is_none()
        {
            problem(
                "addr",
                format!(
                    "{a} accepts connections from other machines, but no authentication is configured. \
                     Without an auth section mcpgate only listens on loopback (e.g. \"127.0.0.1:8080\"); \
                     put it behind authentication before exposing it"
                ),
            );
        }
        let base_url = match (&self.base_url, addr) {
            (Some(text), _) => match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.query().is_some() || u.fragment().is_some() {
                        problem("baseURL", "must not have a query or fragment".into());
                    }
                    Some(u)
                }
                Ok(_) => {
                    problem("baseURL", "must be an http(s) URL with a host".into());
                    None
                }
                Err(e) => {
                    problem("baseURL", format!("is not a valid URL: {e}"));
                    None
                }
            },
            (None, Some(a)) => Url::parse(&format!("http://{a}")).ok(),
            (None, None) => None,
        };
        for origin in &self.allowed_origins {
            if origin != "*" && Url::parse(origin).map(|u| u.origin().is_tuple()) != Ok(true) {
                problem(
                    "allowedOrigins",
                    format!("{origin:?} is not an origin like \"https://app.example.com\""),
                );
            }
        }
        let max_body_bytes = self
            .max_body_bytes
            .unwrap_or(Settings::DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            problem("maxBodyBytes", "must be at least 1024".into());
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in self.trusted_proxies.iter().enumerate() {
            match IpRange::parse(text) {
                Some(r) => trusted_proxies.push(r),
                None => problems.push(Problem {
                    path: format!("proxy.trustedProxies[{i}]"),
                    message: format!(
                        "{text:?} is not an IP address or CIDR range like \"10.0.0.0/8\""
                    ),
                }),
            }
        }
        let auth = self
            .auth
            .and_then(|a| a.validate(base_url.as_ref(), problems));
        for s in &services {
            let path = format!("mcpServers.{}", s.name);
            let per_user =
                s.uses_user_values || s.user_auth.is_some() || !s.service_auths.is_empty();
            if per_user && auth.is_none() {
                problems.push(Problem {
                    path: path.clone(),
                    message: "uses per-user values, user tokens or serviceAuths, which need sign-in: add a proxy.auth section".into(),
                });
            }
            if (s.uses_user_token || s.user_auth.is_some())
                && auth.as_ref().is_some_and(|a| a.encryption_keys.is_empty())
            {
                problems.push(Problem {
                    path: "proxy.auth.encryptionKey".into(),
                    message: format!(
                        "is required because {path} keeps per-user tokens (stored encrypted with it); set it to 32 random bytes in base64, e.g. {{\"$env\": \"MCPGATE_ENCRYPTION_KEY\"}} with the output of `openssl rand -base64 32`"
                    ),
                });
            }
        }
        Some(Settings {
            name: self.name.unwrap_or_else(|| "mcpgate".to_string()),
            addr: addr?,
            base_url: base_url?,
            base_url_configured: self.base_url.is_some(),
            max_body_bytes,
            allowed_origins: self.allowed_origins,
            shutdown_grace: self
                .shutdown_grace
                .map_or(Settings::DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            services,
            auth,
            trusted_proxies,
            policy: crate::policy::Policy::default(),
            aggregate: super::AggregateSettings::none(),
        })
    }
}
