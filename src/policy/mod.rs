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
mod tests {
    use super::*;

    const SERVICES: &[&str] = &["github", "filesystem", "time"];

    fn rule(name: &str, subjects: &[&str], items: &[&str]) -> Rule {
        let s: Vec<String> = subjects.iter().map(|x| x.to_string()).collect();
        let i: Vec<String> = items.iter().map(|x| x.to_string()).collect();
        Rule::parse(name.into(), &s, &i, SERVICES).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob("list_*", "list_repos"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("list_*", "get_list_x"));
        assert!(glob("*_file", "write_file"));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(!glob("*a*b", "xxaxxbxx"));
        assert!(glob("é?*", "éàü"));
        assert!(glob("?", "ü"));
        assert!(!glob("?", "üx"));
        assert!(glob("a*ü", "abcü"));
    }

    #[test]
    fn deny_wins_and_default_deny_once_named() {
        let p = Policy::new(
            vec![
                rule("eng", &["@corp.com"], &["filesystem:*", "github:list_*"]),
                rule("no-writes", &["*"], &["!filesystem:write_file"]),
            ],
            vec![],
        );
        let alice = Caller::person("Alice@Corp.com", vec![]);
        let eve = Caller::person("eve@other.com", vec![]);
        assert!(p.allows(Some(&alice), "filesystem", ItemKind::Tool, "read_file"));
        let d = p.decide(Some(&alice), "filesystem", ItemKind::Tool, "write_file");
        assert!(!d.allowed);
        assert!(d.because.contains("no-writes"), "{}", d.because);
        assert!(p.allows(Some(&alice), "github", ItemKind::Tool, "list_repos"));
        assert!(!p.allows(Some(&alice), "github", ItemKind::Tool, "delete_repo"));
        assert!(!p.allows(Some(&eve), "filesystem", ItemKind::Tool, "read_file"));
        // No rule names `time`: open to all.
        assert!(p.allows(Some(&eve), "time", ItemKind::Tool, "now"));
        assert!(!p.governs("time"));
        assert!(p.governs("github"));
    }

    #[test]
    fn resources_are_judged_by_their_canonical_uri() {
        let p = Policy::new(
            vec![
                rule("files", &["*"], &["filesystem:file:///public/*"]),
                rule("secret", &["*"], &["!filesystem:file:///public/secret/*"]),
            ],
            vec![],
        );
        let a: Option<&Caller> = None;
        let ok = |uri: &str| p.allows(a, "filesystem", ItemKind::Resource, uri);
        assert!(ok("file:///public/a.txt"));
        assert!(!ok("file:///public/../etc/passwd"));
        assert!(!ok("file:///public/%2e%2e/etc/passwd"));
        assert!(!ok("file:///public/secret/key"));
        assert!(!ok("FILE:///public/secret/key"));
        assert!(!ok("file:///public/%73ecret/key"));
        assert!(!ok("file:///public//secret/key"));
        assert!(!ok("file:////etc/passwd"));
    }

    #[test]
    fn subjects() {
        let p = Policy::new(
            vec![
                rule("g", &["group:ops"], &["time"]),
                rule("bot", &["service:ci"], &["github:get_*"]),
            ],
            vec![],
        );
        let ops = Caller::person("x@y.z", vec!["ops".into()]);
        let bot = Caller::machine("ci");
        assert!(p.allows(Some(&ops), "time", ItemKind::Tool, "now"));
        assert!(!p.allows(Some(&bot), "time", ItemKind::Tool, "now"));
        assert!(p.allows(Some(&bot), "github", ItemKind::Tool, "get_issue"));
        assert!(!p.allows(None, "github", ItemKind::Tool, "get_issue"));

        // A domain rule trusts the verified domain, not the address's text (a
        // consumer Google account with a corp.com address has none).
        let d = Policy::new(
            vec![
                rule("corp", &["@corp.com"], &["time"]),
                rule("org", &["org:acme"], &["github"]),
            ],
            vec![],
        );
        let mut consumer = Caller::person("x@corp.com", vec![]);
        consumer.domain = None;
        assert!(!d.allows(Some(&consumer), "time", ItemKind::Tool, "now"));
        assert!(d.allows(
            Some(&Caller::person("x@corp.com", vec![])),
            "time",
            ItemKind::Tool,
            "now"
        ));
        // GitHub organizations are `org:`, never `group:`.
        let member = Caller::person("m@x.io", vec!["org:acme".into()]);
        let grouped = Caller::person("g@x.io", vec!["acme".into()]);
        assert!(d.allows(Some(&member), "github", ItemKind::Tool, "x"));
        assert!(!d.allows(Some(&grouped), "github", ItemKind::Tool, "x"));
    }

    #[test]
    fn tool_filter_comes_first() {
        let p = Policy::new(
            vec![rule("all", &["*"], &["github:*"])],
            vec![(
                "github".into(),
                ToolFilter {
                    allow: false,
                    names: vec!["delete_*".into()],
                },
            )],
        );
        let a: Option<&Caller> = None;
        assert!(!p.allows(a, "github", ItemKind::Tool, "delete_repo"));
        assert!(p.allows(a, "github", ItemKind::Tool, "list"));
        // The filter is about tools; prompts follow the rules only.
        assert!(p.allows(a, "github", ItemKind::Prompt, "delete_x"));
    }

    #[test]
    fn bad_rules_are_explained() {
        let e = Rule::parse(
            "r".into(),
            &["bob".into()],
            &["nope:x".into(), ":x".into()],
            SERVICES,
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].field, "subjects[0]");
        assert!(e[0].error.to_string().contains("not one of"));
        assert_eq!(e[1].field, "tools[0]");
        assert!(e[1].error.to_string().contains("not configured"));
        assert_eq!(e[2].error, PatternError::NotAPattern(":x".into()));
    }
}
