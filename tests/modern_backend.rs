//! Servers that speak MCP 2026-07-28 (the official Python SDK 2.3, serving
//! nothing else) behind the gateway, reached by clients of both eras.

// Sampling and elicitation handlers of the session era are deprecated in
// rmcp's 2026-07-28 types but are what a session-era client runs.
#![allow(deprecated)]

mod common;

use common::modern::Modern;
use common::*;
use rmcp::model::{
    CallToolRequestParams, ElicitRequestParams, ElicitResult, ElicitationAction, ErrorData,
};
use rmcp::service::{ClientLifecycleMode, RequestContext, serve_client_with_lifecycle};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;

/// A session-era client that answers elicitation with the name Alice.
#[derive(Clone, Default)]
struct Alice;

impl ClientHandler for Alice {
    fn get_info(&self) -> rmcp::model::ClientInfo {
        rmcp::model::ClientInfo::new(
            serde_json::from_value(json!({"elicitation": {}})).expect("capabilities"),
            rmcp::model::Implementation::new("mcpgate-test", "1.0"),
        )
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"name": "Alice"})))
    }
}

fn text(r: &rmcp::model::CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// A session-era client (rmcp with `initialize`) gets a session the gateway
/// makes up from the server's `server/discover`; the server's input rounds
/// become elicitation requests on the client's stream.
#[tokio::test]
async fn a_session_era_client_reaches_a_2026_server() {
    let server = modern_server().await;
    let gw = gateway(json!({"mcpServers": {"modern": {
        "url": server.url, "headers": {"Authorization": "Bearer for-the-server"}}}}))
    .await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/modern/mcp", gw.url));
    let client = serve_client_with_lifecycle(Alice, transport, ClientLifecycleMode::Initialize)
        .await
        .expect("initialize, answered by the gateway");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("modern-test-server")
    );
    assert_eq!(info.protocol_version.to_string(), "2025-11-25");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"greet") && names.contains(&"echo"),
        "{names:?}"
    );
    let args = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "across eras"}))),
        )
        .await
        .expect("echo");
    assert_eq!(text(&r), "across eras");
    let r = client
        .call_tool(CallToolRequestParams::new("greet"))
        .await
        .expect("greet, through an elicitation round");
    assert_eq!(text(&r), "Hello, Alice!");
    let r = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .expect("whoami");
    assert_eq!(
        text(&r),
        "Bearer for-the-server",
        "the service's configured headers reach it"
    );
    client.cancel().await.expect("close");
}

/// Progress on the server's stream reaches a session-era client's request.
#[tokio::test]
async fn progress_from_a_2026_server_reaches_the_session_era_stream() {
    let server = modern_server().await;
    let gw = gateway(json!({"mcpServers": {"modern": {"url": server.url}}})).await;
    let mut c = Mcp::new(format!("{}/modern/mcp", gw.url));
    c.initialize().await;
    let msgs = c
        .request(
            "tools/call",
            json!({"name": "progress", "arguments": {}, "_meta": {"progressToken": "p1"}}),
        )
        .await;
    let progress: Vec<&serde_json::Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p1")
    );
    let answer = msgs.last().expect("answer");
    assert_eq!(text_of(answer), "done");
    assert!(
        answer["result"].get("resultType").is_none(),
        "session-era shape: {answer}"
    );
}

/// A 2026-07-28 client reaches a 2026-07-28 server, signed in at the gateway:
/// the request is forwarded as it is (the server's own input key and
/// `requestState`), with the service's credentials instead of the person's
/// token for the gateway.
#[tokio::test]
async fn a_2026_client_reaches_a_2026_server() {
    let server = modern_server().await;
    let mut config = common::oauth::config_with(common::oauth::local_auth("memory"));
    config["mcpServers"]["modern"] =
        json!({"url": server.url, "headers": {"Authorization": "Bearer for-the-server"}});
    let gw = gateway(config).await;
    let alice = common::oauth::tokens_for(&gw.url, "alice@example.com", "pw-alice", None).await;
    let mut anonymous = Modern::new(format!("{}/modern/mcp", gw.url), None);
    let (status, _) = anonymous.request("tools/list", json!({})).await;
    assert_eq!(status, 401, "sign-in applies to forwarded requests too");
    let mut c = Modern::new(format!("{}/modern/mcp", gw.url), Some(&alice.access));
    let who = c.call("whoami", json!({})).await;
    assert_eq!(
        text_of(&who),
        "Bearer for-the-server",
        "the server gets the service's credential, never the person's gateway token"
    );
    let (status, d) = c.request("server/discover", json!({})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "modern-test-server"
    );
    let echo = c
        .call("echo", json!({"arguments": {"text": "modern to modern"}}))
        .await;
    assert_eq!(text_of(&echo), "modern to modern");
    let first = c.call("greet", json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    assert_eq!(
        first["result"]["inputRequests"]["user_name"]["method"],
        "elicitation/create"
    );
    let state = first["result"]["requestState"]
        .as_str()
        .expect("state")
        .to_string();
    let done = c
        .call(
            "greet",
            json!({"requestState": state, "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Bea"}}}}),
        )
        .await;
    assert_eq!(text_of(&done), "Hello, Bea!", "{done}");
    assert!(
        state.starts_with("v1."),
        "the server's own requestState, passed through: {state}"
    );
    // Extension methods (tasks, SEP-2663) go to the server too: this one
    // offers none, and it is the server that says so.
    let (status, tasks) = c.request("tasks/get", json!({"taskId": "t-1"})).await;
    assert_eq!(status, 404, "{tasks}");
    assert_eq!(tasks["error"]["code"], -32601);
    let message = tasks["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("is not a method of MCP"),
        "the gateway's own refusal: {message}"
    );
}
