//! An independent MCP client (the official Rust SDK, rmcp) through the gateway,
//! against stdio and streamable HTTP backends.

// Sampling is deprecated in MCP 2026-07-28 but is still part of the versions
// the gateway proxies, so the test keeps exercising it.
#![allow(deprecated)]

mod common;

use common::*;
use rmcp::model::{
    CallToolRequestParams, CreateMessageRequestParams, CreateMessageResult, ErrorData,
    ProtocolVersion, Role, SamplingMessage, SamplingMessageContentBlock,
};
use rmcp::service::{ClientLifecycleMode, RequestContext, serve_client_with_lifecycle};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

#[derive(Clone, Default)]
struct Sampler;

impl ClientHandler for Sampler {
    fn get_info(&self) -> rmcp::model::ClientInfo {
        rmcp::model::ClientInfo::new(
            serde_json::from_value(json!({"sampling": {}, "elicitation": {}}))
                .expect("capabilities"),
            rmcp::model::Implementation::new("mcpgate-test", "1.0"),
        )
    }

    async fn create_elicitation(
        &self,
        _request: rmcp::model::ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, ErrorData> {
        Ok(
            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                .with_content(json!({"name": "Alice"})),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_value(&params.messages).unwrap_or_default();
        let answer = if asked.to_string().contains("2+2") {
            "four"
        } else {
            "?"
        };
        Ok(CreateMessageResult::new(
            SamplingMessage::new(Role::Assistant, SamplingMessageContentBlock::text(answer)),
            "test-model".into(),
        ))
    }
}

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn first_text(r: &rmcp::model::CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn rmcp_client_lists_calls_and_answers_sampling() {
    let backend = test_server_http().await;
    let gw = gateway(json!({"mcpServers": {
        "local": stdio_service(),
        "remote": {"url": backend.url},
    }}))
    .await;
    for svc in ["local", "remote"] {
        let transport = StreamableHttpClientTransport::from_uri(format!("{}/{svc}/mcp", gw.url));
        let client = Sampler
            .serve(transport)
            .await
            .expect("rmcp client connects");
        let info = client.peer_info().expect("server info");
        let name = info.server_info.as_ref().map(|i| i.name.clone());
        assert_eq!(name.as_deref(), Some("mcp-test-server"), "{svc}");
        let tools = client.list_all_tools().await.expect("tools/list");
        assert!(tools.iter().any(|t| t.name == "echo"), "{svc}");
        let r = client
            .call_tool(
                CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hello"}))),
            )
            .await
            .expect("echo");
        assert_eq!(first_text(&r), "hello", "{svc}");
        let r = client
            .call_tool(
                CallToolRequestParams::new("sample")
                    .with_arguments(args(json!({"prompt": "2+2?"}))),
            )
            .await
            .expect("sample");
        assert_eq!(first_text(&r), "sampled: four", "{svc}");
        let r = client
            .call_tool(CallToolRequestParams::new("fail"))
            .await
            .expect("a tool error is a result");
        assert_eq!(r.is_error, Some(true), "{svc}");
        client.cancel().await.expect("close");
    }
}

/// A client that speaks MCP 2026-07-28 first (rmcp's auto lifecycle) speaks it
/// with the gateway, in front of a session-era stdio server: the server's
/// mid-call sampling and elicitation reach the client as `input_required`
/// rounds, which rmcp answers through its handler and retries.
#[tokio::test]
async fn a_2026_client_speaks_2026_with_a_session_era_server() {
    let gw = gateway(json!({"mcpServers": {"local": stdio_service()}})).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/local/mcp", gw.url));
    let client = serve_client_with_lifecycle(
        Sampler,
        transport,
        ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        },
    )
    .await
    .expect("connects");
    assert_eq!(
        client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28),
        "no fallback to initialize"
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("test_sampling")
                .with_arguments(args(json!({"prompt": "what is 2+2?"}))),
        )
        .await
        .expect("sampling round");
    assert_eq!(first_text(&r), "LLM response: four");
    let r = client
        .call_tool(CallToolRequestParams::new(
            "test_input_required_result_elicitation",
        ))
        .await
        .expect("elicitation round");
    assert_eq!(first_text(&r), "Hello, Alice!");
    client.cancel().await.expect("close");
}

/// A session-era client (rmcp's legacy lifecycle) on the same URL still gets a
/// session.
#[tokio::test]
async fn a_session_era_client_still_initializes() {
    let gw = gateway(json!({"mcpServers": {"local": stdio_service()}})).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/local/mcp", gw.url));
    let client = serve_client_with_lifecycle(Sampler, transport, ClientLifecycleMode::Initialize)
        .await
        .expect("a legacy session");
    assert_ne!(
        client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "fallback"}))),
        )
        .await
        .expect("echo");
    assert_eq!(first_text(&r), "fallback");
    client.cancel().await.expect("close");
}
