//! Rules and tool filters: who sees and may use what, deny over allow,
//! services no rule names, globs, URIs, and how bad rules are explained.

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
