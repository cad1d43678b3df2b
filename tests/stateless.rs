//! MCP 2026-07-28 clients through the real binary, in front of session-era
//! stdio servers: sign-in, the aggregated endpoint, input rounds, sealed
//! request state, backend sessions kept per person, and both eras on one URL.

mod common;

use common::modern::Modern;
use common::oauth::{Tokens, config_with, local_auth, tokens_for};
use common::*;
use serde_json::json;

async fn signed_in_gateway() -> (Proc, Tokens, Tokens) {
    let gw = gateway(config_with(local_auth("memory"))).await;
    let alice = tokens_for(&gw.url, "alice@example.com", "pw-alice", None).await;
    let bob = tokens_for(&gw.url, "bob@example.com", "pw-bob", None).await;
    (gw, alice, bob)
}

/// A modern client calls a tool, through `/mcp` with sign-in, on a stdio
/// server that asks the user mid-call; the question comes back as an input
/// request, the answer goes on to the held call.
#[tokio::test]
async fn elicitation_mid_call_through_the_aggregate_with_sign_in() {
    let (gw, alice, _) = signed_in_gateway().await;
    let mut anonymous = Modern::new(format!("{}/mcp", gw.url), None);
    let (status, _) = anonymous.request("tools/list", json!({})).await;
    assert_eq!(status, 401, "sign-in applies to 2026-07-28 requests");

    let mut c = Modern::new(format!("{}/mcp", gw.url), Some(&alice.access));
    let (status, list) = c.request("tools/list", json!({})).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["result"]["resultType"], "complete");
    assert_eq!(
        list["result"]["cacheScope"], "private",
        "a signed-in person's list is theirs"
    );
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"a_test_input_required_result_elicitation"),
        "{names:?}"
    );

    let first = c
        .call("a_test_input_required_result_elicitation", json!({}))
        .await;
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    assert_eq!(
        r["inputRequests"]["a_user_name"]["method"],
        "elicitation/create"
    );
    assert_eq!(
        r["inputRequests"]["a_user_name"]["params"]["message"],
        "What is your name?"
    );
    let state = r["requestState"].as_str().expect("requestState");
    let done = c
        .call(
            "a_test_input_required_result_elicitation",
            json!({"requestState": state, "inputResponses": {"a_user_name": {"action": "accept", "content": {"name": "Alice"}}}}),
        )
        .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(text_of(&done), "Hello, Alice!");
}

/// Each person's requests go to their own backend process, reused from one
/// request to the next; another person's never reach it.
#[tokio::test]
async fn two_people_never_share_a_backend_session() {
    let (gw, alice, bob) = signed_in_gateway().await;
    let mut a = Modern::new(format!("{}/a/mcp", gw.url), Some(&alice.access));
    let mut b = Modern::new(format!("{}/a/mcp", gw.url), Some(&bob.access));
    let alice_pid = text_of(&a.call("pid", json!({})).await);
    let bob_pid = text_of(&b.call("pid", json!({})).await);
    assert_ne!(alice_pid, bob_pid, "one process per person");
    assert_eq!(
        text_of(&a.call("pid", json!({})).await),
        alice_pid,
        "Alice's next request reuses her backend session"
    );
    assert_eq!(text_of(&b.call("pid", json!({})).await), bob_pid);
}

/// A `requestState` is sealed and bound: altered, presented by someone else,
/// or presented twice, it is refused, and the held call is not disturbed by
/// the refusals.
#[tokio::test]
async fn a_tampered_borrowed_or_replayed_request_state_is_refused() {
    let (gw, alice, bob) = signed_in_gateway().await;
    let url = format!("{}/a/mcp", gw.url);
    let mut a = Modern::new(url.clone(), Some(&alice.access));
    let mut b = Modern::new(url, Some(&bob.access));
    let tool = "test_input_required_result_request_state";
    let first = a.call(tool, json!({})).await;
    let state = first["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("input_required: {first}"))
        .to_string();
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("a key");
    let answer = json!({key.clone(): {"action": "accept", "content": {"ok": true}}});

    let tampered = a
        .call(
            tool,
            json!({"requestState": format!("{state}-TAMPERED"), "inputResponses": answer}),
        )
        .await;
    assert_eq!(tampered["error"]["code"], -32602, "{tampered}");
    let borrowed = b
        .call(
            tool,
            json!({"requestState": state, "inputResponses": answer}),
        )
        .await;
    assert_eq!(borrowed["error"]["code"], -32602, "{borrowed}");
    assert!(
        borrowed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another request, person or service")),
        "{borrowed}"
    );
    let other_args = a
        .call(
            tool,
            json!({"arguments": {"x": 1}, "requestState": state, "inputResponses": answer}),
        )
        .await;
    assert_eq!(other_args["error"]["code"], -32602, "{other_args}");

    let done = a
        .call(
            tool,
            json!({"requestState": state, "inputResponses": answer}),
        )
        .await;
    assert_eq!(text_of(&done), "state-ok: confirmed=true", "{done}");
    let replayed = a
        .call(
            tool,
            json!({"requestState": state, "inputResponses": answer}),
        )
        .await;
    assert_eq!(replayed["error"]["code"], -32602, "{replayed}");
}

/// A session-era session and 2026-07-28 requests on the same URL at the same
/// time: neither disturbs the other.
#[tokio::test]
async fn both_eras_on_one_url_at_once() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let url = format!("{}/svc/mcp", gw.url);
    let mut old = Mcp::new(url.clone());
    old.initialize().await;
    let mut new = Modern::new(url, None);
    let slow_old = async {
        let r = old.call("sleep", json!({"ms": 300})).await;
        let echo = old.call("echo", json!({"text": "session era"})).await;
        (r, echo)
    };
    let modern = async {
        let mut texts = Vec::new();
        for i in 0..5 {
            let r = new
                .call(
                    "echo",
                    json!({"arguments": {"text": format!("modern {i}")}}),
                )
                .await;
            texts.push(text_of(&r));
        }
        let (status, discover) = new.request("server/discover", json!({})).await;
        (texts, status, discover)
    };
    let ((slept, echo), (texts, status, discover)) = tokio::join!(slow_old, modern);
    assert!(slept.get("result").is_some(), "{slept}");
    assert_eq!(text_of(&echo), "session era");
    assert_eq!(
        texts,
        (0..5).map(|i| format!("modern {i}")).collect::<Vec<_>>()
    );
    assert_eq!(status, 200);
    assert_eq!(
        discover["result"]["cacheScope"], "public",
        "no sign-in: nothing personal"
    );
    assert!(
        discover["result"]["capabilities"]["tools"].is_object(),
        "{discover}"
    );
}

/// A client that declares no elicitation is told which capability the tool
/// needs (-32021, HTTP 400) instead of being asked.
#[tokio::test]
async fn an_undeclared_capability_is_named() {
    let gw = gateway(json!({"mcpServers": {"svc": stdio_service()}})).await;
    let mut c = Modern::new(format!("{}/svc/mcp", gw.url), None);
    c.capabilities = json!({});
    let (status, r) = c
        .request(
            "tools/call",
            json!({"name": "test_missing_capability", "arguments": {}}),
        )
        .await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["code"], -32021);
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}})
    );
    // The backend session is still fine for the next request.
    let (_, ok) = c
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "still here"}}),
        )
        .await;
    assert_eq!(text_of(&ok), "still here");
}
