use super::*;

fn env(var: &str) -> Option<String> {
    match var {
        "TOKEN" => Some("s3cret".into()),
        _ => None,
    }
}

fn ok(text: &str) -> Settings {
    match parse(text, "test.json", &env) {
        Ok(s) => s,
        Err(e) => panic!("expected valid config, got {e}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse(text, "test.json", &env) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn claude_desktop_shape_works_unchanged() {
    let s = ok(r#"{"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"A": "b"}},
        "remote": {"url": "http://127.0.0.1:9000/mcp", "headers": {"X-Key": {"$env": "TOKEN"}}},
        "old": {"url": "http://127.0.0.1:9000/sse", "transportType": "sse"},
        "front": {"transportType": "stdio", "command": "x"},
        "typed": {"type": "http", "url": "https://example.com/mcp"}
    }}"#);
    assert_eq!(s.services.len(), 5);
    assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
    let kinds: Vec<_> = s
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.backend.kind()))
        .collect();
    assert!(kinds.contains(&("fs", "stdio")));
    assert!(kinds.contains(&("old", "sse")));
    assert!(kinds.contains(&("typed", "streamable-http")));
    let remote = s
        .services
        .iter()
        .find(|s| s.name.as_str() == "remote")
        .expect("remote");
    match &remote.backend {
        BackendSpec::StreamableHttp { headers, .. } => assert_eq!(headers["X-Key"], "s3cret"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let p = problems(
        r#"{
        "proxy": {"addr": "127.0.0.1:8080", "bogus": 1},
        "mcpServers": {
            "a": {"command": "x", "argz": []},
            "b": {"command": "x", "env": {"K": {"$env": "MISSING_VAR"}}},
            "c": {"url": "ftp://x"},
            "Bad Name": {"command": "x"},
            "d": {"command": "x", "requestTimeout": "soon"}
        }
    }"#,
    );
    let joined = p.join("\n");
    assert!(
        joined.contains("proxy.bogus: unknown field `bogus`"),
        "{joined}"
    );
    assert!(
        joined.contains("mcpServers.a.argz: unknown field `argz`"),
        "{joined}"
    );
    assert!(
        joined.contains("mcpServers.b.env.K: environment variable MISSING_VAR is not set"),
        "{joined}"
    );
    assert!(
        joined.contains("mcpServers.c.url: scheme \"ftp\""),
        "{joined}"
    );
    assert!(
        joined.contains("mcpServers.Bad Name: service name"),
        "{joined}"
    );
    assert!(joined.contains("mcpServers.d.requestTimeout"), "{joined}");
    assert_eq!(p.len(), 6, "one problem each, no echoes: {joined}");
}

#[test]
fn no_shell_expansion() {
    let s = ok(r#"{"mcpServers": {"a": {"command": "x", "env": {"P": "$TOKEN"}}}}"#);
    match &s.services[0].backend {
        BackendSpec::Stdio { env, .. } => assert_eq!(env["P"], "$TOKEN"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn refuses_public_bind_without_auth() {
    let p =
        problems(r#"{"proxy": {"addr": "0.0.0.0:8080"}, "mcpServers": {"a": {"command": "x"}}}"#);
    assert!(p[0].contains("no authentication is configured"), "{p:?}");
    let p = problems(r#"{"proxy": {"addr": ":8080"}, "mcpServers": {"a": {"command": "x"}}}"#);
    assert!(p[0].contains("loopback"), "{p:?}");
}

#[test]
fn ambiguous_or_empty_servers() {
    let p = problems(
        r#"{"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}, "b": {}, "health": {"command": "x"}}}"#,
    );
    let joined = p.join("\n");
    assert!(joined.contains("both \"command\" and \"url\""), "{joined}");
    assert!(joined.contains("needs \"command\""), "{joined}");
    assert!(joined.contains("reserved"), "{joined}");
    assert!(problems(r#"{"mcpServers": {}}"#)[0].contains("no MCP servers"));
}

#[test]
fn base_url_path_is_the_route_prefix() {
    let s = ok(
        r#"{"proxy": {"baseURL": "https://example.com/gw/"}, "mcpServers": {"a": {"command": "x"}}}"#,
    );
    assert_eq!(s.base_path(), "/gw");
}

#[test]
fn committed_schema_is_current() {
    let committed = include_str!("../../config.schema.json");
    assert_eq!(
        committed,
        schema::render(),
        "config.schema.json is stale: run `cargo run -- config-schema > config.schema.json`"
    );
}

#[test]
fn ip_ranges() {
    use std::net::IpAddr;
    let r = IpRange::parse("10.0.0.0/8").unwrap();
    assert!(r.contains("10.1.2.3".parse::<IpAddr>().unwrap()));
    assert!(r.contains("::ffff:10.9.9.9".parse::<IpAddr>().unwrap()));
    assert!(!r.contains("11.0.0.1".parse::<IpAddr>().unwrap()));
    let one = IpRange::parse("127.0.0.1").unwrap();
    assert!(one.contains("127.0.0.1".parse::<IpAddr>().unwrap()));
    assert!(!one.contains("127.0.0.2".parse::<IpAddr>().unwrap()));
    let all = IpRange::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("8.8.8.8".parse::<IpAddr>().unwrap()));
    let v6 = IpRange::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse::<IpAddr>().unwrap()));
    assert!(IpRange::parse("10.0.0.0/33").is_none());
    assert!(IpRange::parse("nonsense").is_none());
}
