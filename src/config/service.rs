//! One entry of `mcpServers` as written in the file, and its validation into
//! a typed backend, limits and per-person settings.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::duration::DurationStr;
use super::{BackendSpec, Limits, Problem};

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
