//! Who may use which tools, prompts and resources.
//!
//! Two layers, applied in this order to every list and every call, on the
//! per-service endpoints and the aggregated one alike:
//!
//! 1. a service's `toolFilter` (mcp-front's `allow` / `block` list of tool
//!    names), the same for everyone;
//! 2. the top-level `policies`: rules mapping subjects (emails, domains,
//!    groups, service-auth identities, `*`) to `service:item` globs, with `!`
//!    for deny. Deny wins over allow. A service no rule names stays open; once
//!    any rule names it, whatever no rule grants is denied.
//!
//! A hidden item is absent from every list, and calling it gets the very error
//! a nonexistent one gets (the gateway answers both), so a policy reveals
//! nothing about what it hides.

use crate::caller::Caller;

/// What kind of thing a name refers to. Tools and prompts are matched by
/// name, resources and resource templates by URI (or URI template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Tool,
    Prompt,
    Resource,
}

/// What is wrong with one part of a configured rule. Each message names the
/// text and shows the forms that work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("is empty; name who the rule is for (e.g. [\"@corp.com\"] or [\"*\"])")]
    NoSubjects,
    #[error("is empty; list what the rule allows or denies (e.g. [\"github:list_*\"])")]
    NoItems,
    #[error(
        "subject {0:?} is not one of: an email (\"alice@corp.com\"), a domain (\"@corp.com\"), \"group:NAME\", \"org:NAME\" (a GitHub organization), \"service:NAME\" (a serviceAuths user) or \"*\""
    )]
    UnknownSubject(String),
    #[error("subject {0:?} names nothing after its prefix")]
    EmptySubject(String),
    #[error(
        "{0:?} is not a pattern like \"github:list_*\", \"filesystem:*\" or \"!filesystem:write_file\""
    )]
    NotAPattern(String),
    #[error("{pattern:?} names the service {service:?}, which is not configured (known: {known})")]
    UnknownService {
        pattern: String,
        service: String,
        known: String,
    },
}

/// One problem of a configured rule: where in the rule (`subjects[1]`,
/// `tools`), for config to turn into a JSON path, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub field: String,
    pub error: PatternError,
}

/// One entry of a rule's `subjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubjectPattern {
    Everyone,
    Email(String),
    Domain(String),
    Group(String),
    ServiceIdentity(String),
}

impl SubjectPattern {
    fn parse(text: &str) -> Result<SubjectPattern, PatternError> {
        let t = text.trim();
        if t == "*" {
            return Ok(SubjectPattern::Everyone);
        }
        if let Some(g) = t.strip_prefix("group:") {
            return non_empty(g, text).map(|g| SubjectPattern::Group(g.to_string()));
        }
        if let Some(o) = t.strip_prefix("org:") {
            return non_empty(o, text)
                .map(|o| SubjectPattern::Group(format!("org:{}", o.to_ascii_lowercase())));
        }
        if let Some(s) = t.strip_prefix("service:") {
            return non_empty(s, text).map(|s| SubjectPattern::ServiceIdentity(s.to_string()));
        }
        if let Some(d) = t.strip_prefix("*@").or_else(|| t.strip_prefix('@')) {
            return non_empty(d, text).map(|d| SubjectPattern::Domain(d.to_ascii_lowercase()));
        }
        if let Some((local, domain)) = t.split_once('@')
            && !local.is_empty()
            && !domain.is_empty()
        {
            return Ok(SubjectPattern::Email(t.to_ascii_lowercase()));
        }
        Err(PatternError::UnknownSubject(text.to_string()))
    }

    /// Whether the pattern names this caller (`None`: nobody signed in,
    /// whom only `*` names).
    fn matches(&self, caller: Option<&Caller>) -> bool {
        let Some(c) = caller else {
            return *self == SubjectPattern::Everyone;
        };
        match self {
            SubjectPattern::Everyone => true,
            SubjectPattern::Email(e) => {
                c.service_identity.is_none() && c.email.eq_ignore_ascii_case(e)
            }
            SubjectPattern::Domain(d) => {
                c.service_identity.is_none()
                    && c.domain
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(d))
            }
            SubjectPattern::Group(g) => c.groups.iter().any(|x| x == g),
            SubjectPattern::ServiceIdentity(n) => c.service_identity.as_deref() == Some(n),
        }
    }
}

fn non_empty<'a>(part: &'a str, whole: &str) -> Result<&'a str, PatternError> {
    if part.trim().is_empty() {
        Err(PatternError::EmptySubject(whole.to_string()))
    } else {
        Ok(part.trim())
    }
}

/// `service:item` with `*`/`?` globs, or `!service:item` to deny.
#[derive(Debug, Clone)]
struct ItemPattern {
    deny: bool,
    service: String,
    item: String,
    text: String,
}

impl ItemPattern {
    fn parse(text: &str, services: &[&str]) -> Result<ItemPattern, PatternError> {
        let t = text.trim();
        let (deny, rest) = match t.strip_prefix('!') {
            Some(r) => (true, r.trim()),
            None => (false, t),
        };
        let (service, item) = rest.split_once(':').unwrap_or((rest, "*"));
        if service.is_empty() || item.is_empty() {
            return Err(PatternError::NotAPattern(text.to_string()));
        }
        if !service.contains(['*', '?']) && !services.contains(&service) {
            return Err(PatternError::UnknownService {
                pattern: text.to_string(),
                service: service.to_string(),
                known: services.join(", "),
            });
        }
        Ok(ItemPattern {
            deny,
            service: service.to_string(),
            // URI patterns are compared with URIs in their canonical form.
            item: if item.contains("://") {
                canonical_uri(item).unwrap_or_else(|| item.to_string())
            } else {
                item.to_string()
            },
            text: t.to_string(),
        })
    }

    fn covers_service(&self, service: &str) -> bool {
        glob(&self.service, service)
    }

    fn matches(&self, service: &str, item: &str) -> bool {
        glob(&self.service, service) && glob(&self.item, item)
    }
}

/// One rule of `policies`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    subjects: Vec<SubjectPattern>,
    items: Vec<ItemPattern>,
}

impl Rule {
    /// Validate one configured rule; `services` are the configured service names.
    pub fn parse(
        name: String,
        subjects: &[String],
        items: &[String],
        services: &[&str],
    ) -> Result<Rule, Vec<RuleProblem>> {
        let mut problems = Vec::new();
        let mut rule = Rule {
            name,
            subjects: Vec::new(),
            items: Vec::new(),
        };
        let mut problem = |field: String, error: PatternError| {
            problems.push(RuleProblem { field, error });
        };
        if subjects.is_empty() {
            problem("subjects".to_string(), PatternError::NoSubjects);
        }
        for (i, s) in subjects.iter().enumerate() {
            match SubjectPattern::parse(s) {
                Ok(p) => rule.subjects.push(p),
                Err(e) => problem(format!("subjects[{i}]"), e),
            }
        }
        if items.is_empty() {
            problem("tools".to_string(), PatternError::NoItems);
        }
        for (i, t) in items.iter().enumerate() {
            match ItemPattern::parse(t, services) {
                Ok(p) => rule.items.push(p),
                Err(e) => problem(format!("tools[{i}]"), e),
            }
        }
        if problems.is_empty() {
            Ok(rule)
        } else {
            Err(problems)
        }
    }

    fn applies_to(&self, caller: Option<&Caller>) -> bool {
        self.subjects.iter().any(|p| p.matches(caller))
    }
}

/// A service's `toolFilter` (mcp-front's shape: `{"mode": "allow"|"block", "list": [...]}`).
#[derive(Debug, Clone)]
pub struct ToolFilter {
    pub allow: bool,
    pub names: Vec<String>,
}

impl ToolFilter {
    fn admits(&self, tool: &str) -> bool {
        self.names.iter().any(|n| glob(n, tool)) == self.allow
    }
}

/// Whether something may be used, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub because: String,
}

/// What decided, before it is put in words.
enum Verdict<'a> {
    Filtered(&'a ToolFilter),
    Open,
    Denied(&'a Rule, &'a ItemPattern),
    Allowed(&'a Rule, &'a ItemPattern),
    NotGranted,
}

/// Every rule, and each service's filter.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    filters: Vec<(String, ToolFilter)>,
}

impl Policy {
    pub fn new(rules: Vec<Rule>, filters: Vec<(String, ToolFilter)>) -> Policy {
        Policy { rules, filters }
    }

    /// Whether anything restricts this service: then its endpoint filters lists
    /// and checks calls; otherwise it stays a transparent proxy.
    pub fn governs(&self, service: &str) -> bool {
        self.filter(service).is_some() || self.rules_name(service)
    }

    fn rules_name(&self, service: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.items.iter().any(|p| p.covers_service(service)))
    }

    fn filter(&self, service: &str) -> Option<&ToolFilter> {
        self.filters
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, f)| f)
    }

    /// May `caller` see and use `item` of `service`, and what decided it.
    pub fn decide(
        &self,
        caller: Option<&Caller>,
        service: &str,
        kind: ItemKind,
        item: &str,
    ) -> Decision {
        let (allowed, because) = match self.verdict(caller, service, kind, item) {
            Verdict::Filtered(f) => (
                false,
                format!(
                    "mcpServers.{service}.toolFilter ({} list)",
                    if f.allow { "allow" } else { "block" }
                ),
            ),
            Verdict::Open => (true, "no policy names this service".into()),
            Verdict::Denied(rule, p) => (
                false,
                format!("denied by rule {:?} ({})", rule.name, p.text),
            ),
            Verdict::Allowed(rule, p) => (
                true,
                format!("allowed by rule {:?} ({})", rule.name, p.text),
            ),
            Verdict::NotGranted => (
                false,
                format!("no rule grants it (policies name {service}: default deny)"),
            ),
        };
        Decision { allowed, because }
    }

    /// The same decision without its explanation: on every list item and every
    /// call, so it allocates nothing.
    pub fn allows(
        &self,
        caller: Option<&Caller>,
        service: &str,
        kind: ItemKind,
        item: &str,
    ) -> bool {
        matches!(
            self.verdict(caller, service, kind, item),
            Verdict::Open | Verdict::Allowed(..)
        )
    }

    fn verdict<'a>(
        &'a self,
        caller: Option<&Caller>,
        service: &str,
        kind: ItemKind,
        item: &str,
    ) -> Verdict<'a> {
        if kind == ItemKind::Tool
            && let Some(f) = self.filter(service)
            && !f.admits(item)
        {
            return Verdict::Filtered(f);
        }
        if !self.rules_name(service) {
            return Verdict::Open;
        }
        // A resource is judged by its canonical URI, so `FILE:`, `%73ecret`
        // or `////` cannot slip past a pattern; `.` and `..` segments are
        // never granted.
        let canonical;
        let item = if kind == ItemKind::Resource {
            match canonical_uri(item) {
                Some(c) => {
                    canonical = c;
                    canonical.as_str()
                }
                None => return Verdict::NotGranted,
            }
        } else {
            item
        };
        let mut allowed_by = None;
        for rule in self.rules.iter().filter(move |r| r.applies_to(caller)) {
            for p in rule.items.iter().filter(|p| p.matches(service, item)) {
                if p.deny {
                    return Verdict::Denied(rule, p);
                }
                allowed_by.get_or_insert(Verdict::Allowed(rule, p));
            }
        }
        allowed_by.unwrap_or(Verdict::NotGranted)
    }

    /// Rules that apply to `caller`, for `policy explain`.
    pub fn rules_for<'a>(&'a self, caller: Option<&'a Caller>) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| r.applies_to(caller))
    }

    /// The patterns a rule holds for one service (for `policy explain`).
    pub fn patterns_for<'a>(rule: &'a Rule, service: &'a str) -> impl Iterator<Item = &'a str> {
        rule.items
            .iter()
            .filter(move |p| p.covers_service(service))
            .map(|p| p.text.as_str())
    }
}

/// A URI as policies compare it: percent-escapes decoded, the scheme in lower
/// case, runs of `/` after `scheme://` made one. `None` for a URI with `.` or
/// `..` path segments, which a policy never grants.
pub fn canonical_uri(uri: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(uri)
        .decode_utf8_lossy()
        .into_owned();
    let (scheme, rest) = match decoded.split_once("://") {
        Some((s, r)) => (format!("{}://", s.to_ascii_lowercase()), r.to_string()),
        None => match decoded.split_once(':') {
            Some((s, r)) => (format!("{}:", s.to_ascii_lowercase()), r.to_string()),
            None => (String::new(), decoded),
        },
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    if path.split(['/', '\\']).any(|seg| seg == "." || seg == "..") {
        return None;
    }
    let mut out = scheme;
    let mut last_slash = false;
    for c in rest.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    Some(out)
}

/// Glob match with `*` (any run) and `?` (one character). Works on the
/// characters in place (it runs for every item of every list).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    // The length in bytes of the character starting at `i`.
    let width = |s: &[u8], i: usize| match s[i] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    while ti < t.len() {
        let tw = width(t, ti);
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += tw;
        } else if pi < p.len() && p[pi] != b'*' && p[pi..].starts_with(&t[ti..ti + tw]) {
            pi += tw;
            ti += tw;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += width(t, mark);
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests;
