//! Configuration: the JSON file, its `{"$env": ...}` references, validation that
//! reports every problem with its JSON path, and the typed settings the rest of the
//! gateway reads.
//!
//! Backends are declared in a `mcpServers` map in the Claude Desktop shape, so a
//! Claude Desktop (or mcp-front) config works unchanged.

mod aggregate;
pub mod auth;
mod duration;
mod env;
pub mod schema;
mod service;
pub mod template;
mod types;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use aggregate::AggregateSettings;
pub use duration::DurationStr;
pub use service::{ServiceAuthConfig, ServiceConfig, TransportType, UserAuthConfig};
pub use types::{ConfigFile, ProxyConfig};
use url::Url;

/// A service's name: the first path segment of its URLs (`/<name>/mcp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

/// Why a text is not a service name. The message names the rule (and the URL
/// path the name becomes); groups and the aggregate path reuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceNameError {
    #[error(
        "service name {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit (it becomes the URL path /{0}/mcp)"
    )]
    Invalid(String),
    #[error("service name {0:?} is reserved for the gateway's own endpoints; choose another name")]
    Reserved(String),
}

impl ServiceName {
    /// Path segments that the gateway keeps for itself, now or later.
    const RESERVED: &'static [&'static str] = &[
        "health",
        "ready",
        "mcp",
        "sse",
        "message",
        "authorize",
        "token",
        "register",
        "revoke",
        "jwks",
        "oauth",
        "login",
        "logout",
        "consent",
        "my",
        "static",
        "metrics",
    ];

    pub fn parse(name: &str) -> Result<ServiceName, ServiceNameError> {
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok_chars || !first_ok || name.len() > 64 {
            return Err(ServiceNameError::Invalid(name.to_string()));
        }
        if Self::RESERVED.contains(&name) {
            return Err(ServiceNameError::Reserved(name.to_string()));
        }
        Ok(ServiceName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The root aggregated endpoint's internal name (reserved for it).
    pub fn root() -> ServiceName {
        ServiceName(AggregateSettings::ROOT.to_string())
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the gateway reaches one backend. One enum, so that every kind is handled
/// wherever a backend is used (the compiler sees to it).
#[derive(Debug, Clone)]
pub enum BackendSpec {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
    },
    /// MCP streamable HTTP (2025-03-26 and later).
    StreamableHttp {
        url: Url,
        headers: BTreeMap<String, String>,
    },
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse {
        url: Url,
        headers: BTreeMap<String, String>,
    },
}

impl BackendSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendSpec::Stdio { .. } => "stdio",
            BackendSpec::StreamableHttp { .. } => "streamable-http",
            BackendSpec::Sse { .. } => "sse",
        }
    }
}

/// Per-service limits, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Limits {
    pub request_timeout: Duration,
    pub startup_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_sessions: usize,
    pub max_sessions_per_user: usize,
}

impl Limits {
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
    /// `npx -y` may download a package on first start, hence generous.
    pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    pub const DEFAULT_MAX_SESSIONS: usize = 1000;
    pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 10;
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: ServiceName,
    pub backend: BackendSpec,
    pub limits: Limits,
    /// OAuth scopes a token needs here (with `proxy.auth`).
    pub required_scopes: Vec<String>,
    /// How people provide their token for this service, if it takes one.
    pub user_auth: Option<UserAuthConfig>,
    /// Whether the backend settings hold `{"$userToken": ...}`.
    pub uses_user_token: bool,
    /// Whether they hold any per-user value.
    pub uses_user_values: bool,
    pub service_auths: Vec<ServiceAuthConfig>,
    pub audit_arguments: bool,
    /// One backend per person for all their sessions (stdio only).
    pub shared: bool,
    /// `toolFilter`: which of its tools anyone sees.
    pub tool_filter: Option<crate::policy::ToolFilter>,
}

impl Service {
    /// Whether people need a token of their own for this service.
    pub fn needs_user_token(&self) -> bool {
        self.uses_user_token || self.user_auth.is_some()
    }

    /// The name shown on `/my/tokens`.
    pub fn display_name(&self) -> &str {
        match &self.user_auth {
            Some(UserAuthConfig::Manual {
                display_name: Some(n),
                ..
            })
            | Some(UserAuthConfig::Oauth {
                display_name: Some(n),
                ..
            }) => n,
            _ => self.name.as_str(),
        }
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub addr: SocketAddr,
    /// Public URL of the gateway (scheme, host, optional base path). Its path is
    /// where every route is mounted.
    pub base_url: Url,
    /// False when `base_url` was derived from `addr` (and should follow it).
    pub base_url_configured: bool,
    pub max_body_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub shutdown_grace: Duration,
    pub services: Vec<Service>,
    /// The authorization server's settings; `None` means no authentication.
    pub auth: Option<auth::AuthSettings>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpRange>,
    /// `policies` and every service's `toolFilter`.
    pub policy: crate::policy::Policy,
    /// The aggregated endpoints (`/mcp`, `/<group>/mcp`).
    pub aggregate: AggregateSettings,
}

/// An IP address or CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<std::net::IpAddr>().ok()?,
                Some(p.trim().parse::<u8>().ok()?),
            ),
            None => (text.trim().parse().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { net: addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        // An IPv4 client seen through an IPv6 socket still matches IPv4 ranges.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Settings {
    pub const DEFAULT_ADDR: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

    /// The path prefix every route lives under ("" or "/base").
    pub fn base_path(&self) -> &str {
        self.base_url.path().trim_end_matches('/')
    }
}

/// One thing wrong with a configuration, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} has {} problem(s):",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse(&text, &name, &|var| std::env::var(var).ok())
}

/// Validate configuration text. `lookup_env` resolves `{"$env": "VAR"}`.
pub fn parse(
    text: &str,
    source_name: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        source_name: source_name.to_string(),
        problems,
    };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        fail(vec![Problem {
            path: String::new(),
            message: format!("not valid JSON: {e}"),
        }])
    })?;
    let mut problems = Vec::new();
    env::resolve(&mut value, "", lookup_env, &mut problems);
    // A reference that could not be resolved is reported once, not again as a
    // type error of the place it stands in.
    let unresolved: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    let env_problems = problems.len();

    let serde_json::Value::Object(top) = value else {
        problems.push(Problem {
            path: String::new(),
            message: "the configuration must be a JSON object".into(),
        });
        return Err(fail(problems));
    };

    let mut proxy = ProxyConfig::default();
    let mut services_raw = serde_json::Map::new();
    let mut policies_raw: Vec<types::PolicyConfig> = Vec::new();
    for (key, val) in top {
        match key.as_str() {
            "proxy" => match typed::<ProxyConfig>(val, "proxy") {
                Ok(p) => proxy = p,
                Err(p) => problems.push(p),
            },
            "mcpServers" => match val {
                serde_json::Value::Object(map) => services_raw = map,
                _ => problems.push(Problem {
                    path: "mcpServers".into(),
                    message: "must be an object mapping service names to servers".into(),
                }),
            },
            "policies" => match typed::<Vec<types::PolicyConfig>>(val, "policies") {
                Ok(p) => policies_raw = p,
                Err(p) => problems.push(p),
            },
            "$schema" => {}
            other => problems.push(Problem {
                path: other.to_string(),
                message: format!(
                    "unknown field {other:?}; expected \"proxy\", \"mcpServers\" or \"policies\""
                ),
            }),
        }
    }

    let mut services = Vec::new();
    if services_raw.is_empty() {
        problems.push(Problem {
            path: "mcpServers".into(),
            message: "no MCP servers are configured; add at least one under \"mcpServers\"".into(),
        });
    }
    for (name, val) in services_raw {
        let path = format!("mcpServers.{name}");
        let service_name = match ServiceName::parse(&name) {
            Ok(n) => Some(n),
            Err(m) => {
                problems.push(Problem {
                    path: path.clone(),
                    message: m.to_string(),
                });
                None
            }
        };
        match typed::<ServiceConfig>(val, &path) {
            Ok(cfg) => {
                if let (Some(name), Some(v)) = (service_name, cfg.validate(&path, &mut problems)) {
                    services.push(Service {
                        name,
                        backend: v.backend,
                        limits: v.limits,
                        required_scopes: v.required_scopes,
                        user_auth: v.user_auth,
                        uses_user_token: v.uses_user_token,
                        uses_user_values: v.uses_user_values,
                        service_auths: v.service_auths,
                        audit_arguments: v.audit_arguments,
                        shared: v.shared,
                        tool_filter: v.tool_filter.map(|f| crate::policy::ToolFilter {
                            allow: f.mode == service::ToolFilterMode::Allow,
                            names: f.list,
                        }),
                    });
                }
            }
            Err(p) => problems.push(p),
        }
    }

    let aggregate = proxy.aggregate.take();
    let policy = policies(&policies_raw, &services, &mut problems);
    let aggregate = aggregate::settings(aggregate, &services, &mut problems);
    let settings = proxy.validate(services, &mut problems).map(|s| Settings {
        policy,
        aggregate,
        ..s
    });
    let mut index = 0;
    problems.retain(|p| {
        index += 1;
        index <= env_problems
            || !unresolved.iter().any(|u| {
                p.path == *u
                    || p.path
                        .strip_prefix(u.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
    });
    match settings {
        Some(s) if problems.is_empty() => Ok(s),
        _ => Err(fail(problems)),
    }
}

/// `policies`, checked against the configured services.
fn policies(
    raw: &[types::PolicyConfig],
    services: &[Service],
    problems: &mut Vec<Problem>,
) -> crate::policy::Policy {
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut rules = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let name = p.name.clone().unwrap_or_else(|| format!("policies[{i}]"));
        match crate::policy::Rule::parse(name, &p.subjects, &p.tools, &names) {
            Ok(r) => rules.push(r),
            Err(list) => problems.extend(list.into_iter().map(|p| Problem {
                path: format!("policies[{i}].{}", p.field),
                message: p.error.to_string(),
            })),
        }
    }
    let filters = services
        .iter()
        .filter_map(|s| Some((s.name.to_string(), s.tool_filter.clone()?)))
        .collect();
    crate::policy::Policy::new(rules, filters)
}

/// Deserialize a part of the config, reporting the first error with its full path.
fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    base: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            base.to_string()
        } else {
            format!("{base}.{inner}")
        };
        Problem {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// The path of a resource: `/<service>/mcp`, or `/mcp` (`/sse`) for the root
/// aggregated endpoint.
pub fn endpoint_path(service: &str, endpoint: &str) -> String {
    if service == AggregateSettings::ROOT {
        format!("/{endpoint}")
    } else {
        format!("/{service}/{endpoint}")
    }
}

#[cfg(test)]
mod tests;
