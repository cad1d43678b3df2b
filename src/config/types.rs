//! The configuration file's shape. These types are also the source of the
//! generated JSON Schema (`config.schema.json`), so the docs cannot drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::auth::AuthConfig;
use super::{BackendSpec, IpRange, Limits, Problem, Service, Settings};
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

/// mcp-front's tool filter: only the listed tools (`allow`), or all but them (`block`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolFilterConfig {
    pub mode: ToolFilterMode,
    /// Tool names as the server lists them; `*` and `?` globs allowed.
    pub list: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolFilterMode {
    Allow,
    Block,
}

/// mcp-front's per-service `options` block.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceOptions {
    #[serde(default)]
    pub tool_filter: Option<ToolFilterConfig>,
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

/// How a backend is reached. Optional: inferred from `command` (stdio) or `url`
/// (streamable HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TransportType {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "sse")]
    Sse,
    #[serde(rename = "streamable-http", alias = "http", alias = "streamableHttp")]
    StreamableHttp,
}

/// One MCP server: stdio `{command, args, env}` or remote `{url, headers}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfig {
    /// `stdio`, `sse` or `streamable-http` (alias `http`). Also accepted as `type`.
    #[serde(default, alias = "type")]
    pub transport_type: Option<TransportType>,
    /// stdio: the program to run (looked up on PATH).
    #[serde(default)]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: its environment. The child gets only these plus PATH and HOME.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// stdio: working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Remote: the server's URL (`.../mcp` for streamable HTTP, `.../sse` for legacy SSE).
    #[serde(default)]
    pub url: Option<String>,
    /// Remote: headers added to every request to the server. The client's own
    /// `Authorization` header and cookies are never forwarded.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for the answer to one request. Default `120s`.
    #[serde(default)]
    pub request_timeout: Option<DurationStr>,
    /// Longest wait for a new backend to start and answer `initialize`. Default `60s`.
    #[serde(default)]
    pub startup_timeout: Option<DurationStr>,
    /// A session with no request for this long is closed (and its process ended). Default `30m`.
    #[serde(default)]
    pub idle_timeout: Option<DurationStr>,
    /// Most sessions open at once for this service. Default 1000.
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// OAuth scopes a token needs for this service (with `proxy.auth`). Default `["mcp"]`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Most sessions one person may have open on this service. Default 10.
    #[serde(default)]
    pub max_sessions_per_user: Option<usize>,
    /// mcp-front compatibility: implied by a `{"$userToken": ...}` reference.
    #[serde(default)]
    pub requires_user_token: Option<bool>,
    /// How each person provides their token for this service: typed in at
    /// `/my/tokens` (`manual`) or obtained from the service's provider (`oauth`).
    #[serde(default)]
    pub user_authentication: Option<UserAuthConfig>,
    /// Machine clients (CI jobs, scripts) that cannot do OAuth: static bearer
    /// tokens or basic auth, each acting as a named identity.
    #[serde(default)]
    pub service_auths: Vec<ServiceAuthConfig>,
    /// Log tool-call arguments in the audit records of this service. Default false.
    #[serde(default)]
    pub audit_arguments: bool,
    /// stdio: one process per person, shared by all their sessions (request ids
    /// are rewritten so each answer reaches only the session that asked).
    /// Default false: one process per session.
    #[serde(default)]
    pub shared: bool,
    /// Which of the server's tools anyone sees (before `policies`).
    #[serde(default)]
    pub tool_filter: Option<ToolFilterConfig>,
    /// mcp-front's place for `toolFilter`.
    #[serde(default)]
    pub options: Option<ServiceOptions>,
}

/// How a person provides their token for a service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UserAuthConfig {
    /// The person pastes a token (e.g. a Notion integration secret) at `/my/tokens`.
    #[serde(rename_all = "camelCase")]
    Manual {
        display_name: Option<String>,
        /// What the token is and where to create it.
        #[serde(default)]
        instructions: Option<String>,
        #[serde(default)]
        help_url: Option<String>,
        /// A regular expression the token must match.
        #[serde(default)]
        validation: Option<String>,
    },
    /// mcpgate runs an OAuth code flow (with PKCE) against the service's provider
    /// ("Connect with Linear") and keeps the tokens, refreshed before expiry.
    #[serde(rename_all = "camelCase")]
    Oauth {
        display_name: Option<String>,
        client_id: String,
        client_secret: String,
        authorization_url: String,
        token_url: String,
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// A machine client of one service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServiceAuthConfig {
    /// `Authorization: Bearer <token>`; tokens are hashed at load and compared in constant time.
    #[serde(rename_all = "camelCase")]
    Bearer {
        tokens: Vec<String>,
        /// Who the caller acts as (e.g. `ci@company.com`).
        user: String,
        /// The value of `{"$userToken": ...}` for this caller.
        #[serde(default)]
        user_token: Option<String>,
    },
    /// `Authorization: Basic`.
    #[serde(rename_all = "camelCase")]
    Basic {
        username: String,
        password: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        user_token: Option<String>,
    },
}

/// A duration written as text: `"500ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(DurationStr).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"30s\" or \"5m\": {e}"
            ))
        })
    }
}

/// A service's validated parts, before it is named.
pub(super) struct ValidService {
    pub backend: BackendSpec,
    pub limits: Limits,
    pub required_scopes: Vec<String>,
    pub user_auth: Option<UserAuthConfig>,
    pub uses_user_token: bool,
    pub uses_user_values: bool,
    pub service_auths: Vec<ServiceAuthConfig>,
    pub audit_arguments: bool,
    pub shared: bool,
    pub tool_filter: Option<ToolFilterConfig>,
}

impl ServiceConfig {
    /// Check the combination of fields and build the typed backend.
    pub(super) fn validate(self, path: &str, problems: &mut Vec<Problem>) -> Option<ValidService> {
        let before = problems.len();
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                path: if field.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}.{field}")
                },
                message,
            })
        };
        for (field, text) in [
            ("command", self.command.as_deref()),
            ("cwd", self.cwd.as_deref()),
        ] {
            if text.is_some_and(super::template::uses_user) {
                problem(field, "per-user values ($user, $userToken) are allowed in args, env, url and headers, never here".into());
            }
        }
        if self.shared && (self.command.is_none() || self.url.is_some()) {
            problem(
                "shared",
                "applies to stdio servers (a \"command\"), whose process it shares".into(),
            );
        }
        let max_per_user = self
            .max_sessions_per_user
            .unwrap_or(Limits::DEFAULT_MAX_SESSIONS_PER_USER);
        if max_per_user == 0 {
            problem("maxSessionsPerUser", "must be at least 1".into());
        }
        let mut texts: Vec<&str> = self.args.iter().map(String::as_str).collect();
        texts.extend(self.env.values().map(String::as_str));
        texts.extend(self.url.as_deref());
        texts.extend(self.headers.values().map(String::as_str));
        let uses_token = texts.iter().any(|t| super::template::uses_token(t));
        let uses_user = texts.iter().any(|t| super::template::uses_user(t));
        let kind = match (self.transport_type, &self.command, &self.url) {
            (Some(t), _, _) => t,
            (None, Some(_), None) => TransportType::Stdio,
            (None, None, Some(_)) => TransportType::StreamableHttp,
            (None, Some(_), Some(_)) => {
                problem(
                    "",
                    "has both \"command\" and \"url\"; a server is either a local command (stdio) or a remote URL".into(),
                );
                return None;
            }
            (None, None, None) => {
                problem(
                    "",
                    "needs \"command\" (a local stdio server) or \"url\" (a remote server)".into(),
                );
                return None;
            }
        };
        let backend = match kind {
            TransportType::Stdio => {
                if self.url.is_some() || !self.headers.is_empty() {
                    problem(
                        "url",
                        "\"url\" and \"headers\" are for remote servers, not stdio ones".into(),
                    );
                }
                match self.command {
                    Some(c) if !c.trim().is_empty() => Some(BackendSpec::Stdio {
                        command: c,
                        args: self.args,
                        env: self.env,
                        cwd: self.cwd,
                    }),
                    _ => {
                        problem(
                            "command",
                            "a stdio server needs a non-empty \"command\"".into(),
                        );
                        None
                    }
                }
            }
            TransportType::Sse | TransportType::StreamableHttp => {
                if self.command.is_some() || !self.args.is_empty() || !self.env.is_empty() {
                    problem(
                        "command",
                        "\"command\", \"args\" and \"env\" are for stdio servers, not remote ones"
                            .into(),
                    );
                }
                for name in self.headers.keys() {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        problem(
                            &format!("headers.{name}"),
                            "is not a valid HTTP header name".into(),
                        );
                    }
                }
                match self.url.as_deref().map(Url::parse) {
                    Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {
                        if kind == TransportType::Sse {
                            Some(BackendSpec::Sse {
                                url,
                                headers: self.headers,
                            })
                        } else {
                            Some(BackendSpec::StreamableHttp {
                                url,
                                headers: self.headers,
                            })
                        }
                    }
                    Some(Ok(url)) => {
                        problem(
                            "url",
                            format!(
                                "scheme {:?} is not supported; use http or https",
                                url.scheme()
                            ),
                        );
                        None
                    }
                    Some(Err(e)) => {
                        problem("url", format!("is not a valid URL: {e}"));
                        None
                    }
                    None => {
                        problem("url", "a remote server needs a \"url\"".into());
                        None
                    }
                }
            }
        };
        let limits = Limits {
            request_timeout: self
                .request_timeout
                .map_or(Limits::DEFAULT_REQUEST_TIMEOUT, |d| d.0),
            startup_timeout: self
                .startup_timeout
                .map_or(Limits::DEFAULT_STARTUP_TIMEOUT, |d| d.0),
            idle_timeout: self
                .idle_timeout
                .map_or(Limits::DEFAULT_IDLE_TIMEOUT, |d| d.0),
            max_sessions: self.max_sessions.unwrap_or(Limits::DEFAULT_MAX_SESSIONS),
            max_sessions_per_user: Limits::DEFAULT_MAX_SESSIONS_PER_USER,
        };
        for (field, d) in [
            ("requestTimeout", limits.request_timeout),
            ("startupTimeout", limits.startup_timeout),
            ("idleTimeout", limits.idle_timeout),
        ] {
            if d.is_zero() {
                problem(field, "must be longer than zero".into());
            }
        }
        if limits.max_sessions == 0 {
            problem("maxSessions", "must be at least 1".into());
        }
        let scopes = if self.required_scopes.is_empty() {
            vec!["mcp".to_string()]
        } else {
            self.required_scopes
        };
        for s in &scopes {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                problem(
                    "requiredScopes",
                    format!(
                        "{s:?} is not a valid OAuth scope (printable ASCII without spaces, quotes or backslashes)"
                    ),
                );
            }
        }
        if self.requires_user_token == Some(true) && !uses_token {
            problem(
                "requiresUserToken",
                "is true but no {\"$userToken\": ...} reference says where the token goes".into(),
            );
        }
        if let Some(UserAuthConfig::Manual {
            validation: Some(v),
            ..
        }) = &self.user_authentication
            && regex_lite::Regex::new(v).is_err()
        {
            problem(
                "userAuthentication.validation",
                format!("{v:?} is not a valid regular expression"),
            );
        }
        let mut service_auths = Vec::new();
        for (i, a) in self.service_auths.iter().enumerate() {
            match a {
                ServiceAuthConfig::Bearer { tokens, user, .. } => {
                    if tokens.is_empty() || tokens.iter().any(|t| t.len() < 16) {
                        problem(
                            &format!("serviceAuths[{i}].tokens"),
                            "needs at least one token, each at least 16 characters".into(),
                        );
                    }
                    if user.trim().is_empty() {
                        problem(
                            &format!("serviceAuths[{i}].user"),
                            "names who the caller acts as (e.g. \"ci@company.com\")".into(),
                        );
                    }
                }
                ServiceAuthConfig::Basic {
                    username, password, ..
                } => {
                    if username.is_empty() || username.contains(':') {
                        problem(
                            &format!("serviceAuths[{i}].username"),
                            "must be non-empty and without ':'".into(),
                        );
                    }
                    if password.len() < 12 {
                        problem(
                            &format!("serviceAuths[{i}].password"),
                            "must be at least 12 characters".into(),
                        );
                    }
                }
            }
            service_auths.push(a.clone());
        }
        let options_filter = self.options.and_then(|o| o.tool_filter);
        if self.tool_filter.is_some() && options_filter.is_some() {
            problem(
                "options.toolFilter",
                "is set as well as toolFilter; keep one of them".into(),
            );
        }
        let tool_filter = self.tool_filter.or(options_filter);
        if let Some(f) = &tool_filter
            && f.list.iter().any(|n| n.trim().is_empty())
        {
            problem("toolFilter.list", "holds an empty name".into());
        }
        if problems.len() > before {
            return None;
        }
        backend.map(|backend| ValidService {
            backend,
            limits: Limits {
                max_sessions_per_user: max_per_user,
                ..limits
            },
            required_scopes: scopes,
            user_auth: self.user_authentication,
            uses_user_token: uses_token,
            uses_user_values: uses_user,
            service_auths,
            audit_arguments: self.audit_arguments,
            shared: self.shared,
            tool_filter,
        })
    }
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
