//! Tool-level access policy, enforced: two people with different rules see
//! different tools on `/mcp` and on the per-service endpoints; a hidden tool
//! is absent from every list and calling it gets exactly the error a
//! nonexistent tool gets; prompts follow the same rules; mcp-front's
//! `toolFilter` applies to everyone; `mcpgate policy explain` says why.

mod common;

use common::oauth::*;
use common::{Mcp, gateway, gateway_at, stdio_service, text_of};
use serde_json::{Value, json};

const RULES: &str = r#"[
    {"name": "eng", "subjects": ["group:eng"], "tools": ["a:*", "b:echo"]},
    {"name": "everyone", "subjects": ["*"], "tools": ["b:echo", "b:sleep"]},
    {"name": "no-crash", "subjects": ["@example.com"], "tools": ["!a:crash"]}
]"#;

fn config() -> Value {
    let hash = |p: &str| mcpgate::util::password::hash(p).expect("hash");
    json!({
        "proxy": {"auth": {
            "idp": {"provider": "local", "users": [
                {"email": "alice@example.com", "passwordHash": hash("pw-alice"), "groups": ["eng"]},
                {"email": "bob@example.com", "passwordHash": hash("pw-bob")}
            ]},
            "storage": "memory",
            "rateLimits": {"token": 10000, "register": 10000, "login": 1000}
        }},
        "mcpServers": {"a": stdio_service(), "b": stdio_service(), "open": stdio_service()},
        "policies": serde_json::from_str::<Value>(RULES).unwrap(),
    })
}

async fn names(c: &mut Mcp, method: &str, field: &str) -> Vec<String> {
    let msgs = c.request(method, json!({})).await;
    let answer = msgs.last().expect("answer");
    answer["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The error of a call, with the tool's name replaced, so two can be compared.
fn error_shape(answer: &Value, name: &str) -> Value {
    let mut e = answer["error"].clone();
    assert!(e.is_object(), "an error: {answer}");
    let m = e["message"].as_str().unwrap().replace(name, "NAME");
    e["message"] = json!(m);
    e
}

#[tokio::test]
async fn two_people_see_and_use_different_tools() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = config();
    c["proxy"]["baseURL"] = json!(format!("http://{addr}"));
    let gw = gateway_at(c, &[], &addr).await;
    let base = gw.url.clone();
    let alice = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&base, "bob@example.com", "pw-bob", None).await;

    // The aggregated endpoint.
    let mut a = Mcp::new(format!("{base}/mcp")).with_bearer(&alice.access);
    a.initialize().await;
    let alice_tools = names(&mut a, "tools/list", "tools").await;
    assert!(alice_tools.contains(&"a_echo".to_string()));
    assert!(!alice_tools.contains(&"a_crash".to_string()), "deny wins");
    assert!(
        alice_tools.contains(&"b_echo".to_string()) && alice_tools.contains(&"b_sleep".to_string())
    );
    assert!(
        !alice_tools.contains(&"b_fail".to_string()),
        "default deny on b"
    );
    assert!(
        alice_tools.contains(&"open_crash".to_string()),
        "no rule names `open`"
    );

    let mut b = Mcp::new(format!("{base}/mcp")).with_bearer(&bob.access);
    b.initialize().await;
    let bob_tools = names(&mut b, "tools/list", "tools").await;
    assert!(
        !bob_tools.iter().any(|t| t.starts_with("a_")),
        "{bob_tools:?}"
    );
    assert!(
        bob_tools.contains(&"b_echo".to_string()) && bob_tools.contains(&"b_sleep".to_string())
    );
    assert!(!bob_tools.contains(&"b_fail".to_string()));

    // A hidden tool and a nonexistent one: the same error.
    let hidden = b.call("a_echo", json!({"text": "x"})).await;
    let missing = b.call("a_no_such_tool", json!({})).await;
    assert_eq!(
        error_shape(&hidden, "a_echo"),
        error_shape(&missing, "a_no_such_tool")
    );
    assert_eq!(hidden["error"]["message"], "Unknown tool: a_echo");
    assert_eq!(
        text_of(&a.call("a_echo", json!({"text": "ok"})).await),
        "ok"
    );
    let denied = a.call("a_crash", json!({})).await;
    assert_eq!(denied["error"]["message"], "Unknown tool: a_crash");

    // The per-service endpoints enforce the same rules.
    let mut b_on_b = Mcp::new(format!("{base}/b/mcp")).with_bearer(&bob.access);
    let init = b_on_b.initialize().await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-test-server",
        "its own initialize answer"
    );
    let mut on_b = names(&mut b_on_b, "tools/list", "tools").await;
    on_b.sort();
    assert_eq!(on_b, vec!["echo", "sleep"]);
    let hidden = b_on_b.call("fail", json!({})).await;
    let missing = b_on_b.call("no_such_tool", json!({})).await;
    assert_eq!(
        error_shape(&hidden, "fail"),
        error_shape(&missing, "no_such_tool")
    );
    assert_eq!(
        text_of(&b_on_b.call("echo", json!({"text": "fine"})).await),
        "fine"
    );

    let mut b_on_a = Mcp::new(format!("{base}/a/mcp")).with_bearer(&bob.access);
    b_on_a.initialize().await;
    assert!(names(&mut b_on_a, "tools/list", "tools").await.is_empty());
    // Prompts follow the rules too: nothing of `a` for Bob.
    assert!(
        names(&mut b_on_a, "prompts/list", "prompts")
            .await
            .is_empty()
    );
    let mut a_on_a = Mcp::new(format!("{base}/a/mcp")).with_bearer(&alice.access);
    a_on_a.initialize().await;
    let prompts = names(&mut a_on_a, "prompts/list", "prompts").await;
    let prompt = prompts.first().expect("alice sees a's prompts").clone();
    let got = b_on_a.request("prompts/get", json!({"name": prompt})).await;
    assert_eq!(
        got.last().unwrap()["error"]["message"],
        format!("Unknown prompt: {prompt}")
    );
    let a_tools = names(&mut a_on_a, "tools/list", "tools").await;
    assert!(a_tools.contains(&"echo".to_string()) && !a_tools.contains(&"crash".to_string()));
}

/// mcp-front's `toolFilter` (also in its `options` block) applies to
/// everyone, on the service's endpoint and on `/mcp`; the filtered endpoint
/// still carries everything else (progress here).
#[tokio::test]
async fn tool_filter_applies_to_everyone() {
    let gw = gateway(json!({"mcpServers": {
        "a": {"command": common::TEST_SERVER, "options": {"toolFilter": {"mode": "allow", "list": ["echo", "progress"]}}},
        "b": {"command": common::TEST_SERVER, "toolFilter": {"mode": "block", "list": ["crash", "spawn_*"]}},
    }}))
    .await;
    let mut c = Mcp::new(format!("{}/a/mcp", gw.url));
    c.initialize().await;
    let mut tools = names(&mut c, "tools/list", "tools").await;
    tools.sort();
    assert_eq!(tools, vec!["echo", "progress"]);
    let msgs = c
        .request(
            "tools/call",
            json!({"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 9}}),
        )
        .await;
    assert_eq!(
        msgs.iter()
            .filter(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == 9)
            .count(),
        3
    );
    assert_eq!(
        c.call("fail", json!({})).await["error"]["message"],
        "Unknown tool: fail"
    );

    let mut all = Mcp::new(format!("{}/mcp", gw.url));
    all.initialize().await;
    let tools = names(&mut all, "tools/list", "tools").await;
    assert!(tools.contains(&"a_echo".to_string()) && !tools.contains(&"a_fail".to_string()));
    assert!(tools.contains(&"b_fail".to_string()));
    assert!(
        !tools.contains(&"b_crash".to_string()) && !tools.contains(&"b_spawn_child".to_string())
    );
}

#[tokio::test]
async fn policy_explain_names_the_deciding_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(&path, config().to_string()).unwrap();
    let run = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = vec![
            "policy".into(),
            "explain".into(),
            "--config".into(),
            path.clone().into(),
        ];
        all.extend(args.iter().map(std::ffi::OsString::from));
        common::cli_ok(all)
    };
    let alice = run(&["--user", "alice@example.com"]);
    assert!(
        alice.contains("Rules that apply: eng, everyone, no-crash"),
        "{alice}"
    );
    assert!(
        alice.contains("deny  tool crash: denied by rule \"no-crash\" (!a:crash)"),
        "{alice}"
    );
    assert!(
        alice.contains("allow tool echo: allowed by rule \"eng\" (a:*)"),
        "{alice}"
    );
    assert!(
        alice.contains("deny  tool fail: no rule grants it"),
        "{alice}"
    );
    let bob = run(&["--user", "bob@example.com"]);
    assert!(
        bob.contains("Rules that apply: everyone, no-crash"),
        "{bob}"
    );
    let ci = run(&["--service-identity", "ci", "--no-discover"]);
    assert!(ci.contains("Rules that apply: everyone"), "{ci}");
}

/// Resources are judged by their canonical URI, and a hidden resource, a
/// disguised one and a missing one all get the same answer; methods the
/// policy layer does not know are refused on a governed endpoint.
#[tokio::test]
async fn resources_cannot_be_reached_by_another_spelling() {
    let gw = gateway(json!({
        "mcpServers": {"a": stdio_service()},
        "policies": [
            {"name": "some", "subjects": ["*"], "tools": ["a:test://*", "!a:test://static-binary", "a:echo"]}
        ],
    }))
    .await;
    let mut c = Mcp::new(format!("{}/a/mcp", gw.url));
    c.initialize().await;
    let msgs = c.request("resources/list", json!({})).await;
    let uris: Vec<String> = msgs.last().unwrap()["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_string())
        .collect();
    assert!(uris.contains(&"test://static-text".to_string()), "{uris:?}");
    assert!(
        !uris.contains(&"test://static-binary".to_string()),
        "{uris:?}"
    );
    let read = |uri: &'static str| {
        let mut c = c.same_session();
        async move {
            let msgs = c.request("resources/read", json!({"uri": uri})).await;
            msgs.last().unwrap().clone()
        }
    };
    assert_eq!(
        read("test://static-text").await["result"]["contents"][0]["uri"],
        "test://static-text"
    );
    assert_eq!(
        read("test://template/7/data").await["result"]["contents"][0]["uri"],
        "test://template/7/data",
        "URIs of a listed template are readable"
    );
    for uri in [
        "test://static-binary",
        "TEST://static-binary",
        "test://%73tatic-binary",
        "test://static-text/../static-binary",
        "test://nope",
    ] {
        let answer = read(uri).await;
        assert_eq!(answer["error"]["code"], -32002, "{uri}: {answer}");
        assert_eq!(
            answer["error"]["message"],
            format!("Resource not found: {uri}"),
            "{uri}"
        );
    }
    let msgs = c.request("custom/anything", json!({})).await;
    assert_eq!(msgs.last().unwrap()["error"]["code"], -32601, "{msgs:?}");
}
