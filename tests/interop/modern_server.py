"""Small MCP test backend on the official Python SDK `mcp` 2.3.x, streamable HTTP.

Speaks MCP 2026-07-28 (stateless: server/discover, per-request `_meta`
envelope, InputRequiredResult multi-round-trip). The SDK itself is dual-era:
its StreamableHTTPSessionManager routes on the MCP-Protocol-Version header
(absent or a handshake version -> the 2025 `initialize` session path, anything
else -> the 2026-07-28 single-exchange path). There is no SDK switch to turn
the session era off, so `--modern-only` adds a tiny ASGI guard in front.

Usage:  python modern_server.py [PORT] [--modern-only]
PORT defaults to 0 (ephemeral). The first stdout line is
"listening on http://127.0.0.1:PORT/mcp" once the socket accepts requests.
"""

import asyncio
import json
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER, unsupported_protocol_version_rejection
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

HOST = "127.0.0.1"
mcp = MCPServer("modern-test-server", version="0.1.0", log_level="WARNING")


@mcp.tool(structured_output=False)  # plain text content, no outputSchema
def echo(text: str) -> str:
    """Return the given text unchanged."""
    return text


class NameForm(BaseModel):
    name: str


@mcp.tool(structured_output=False)  # plain text content, no outputSchema
async def greet(ctx: Context) -> str | InputRequiredResult:
    """Ask the user's name (elicitation via InputRequiredResult), then greet them."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        # Session era (dual mode only): no MRTR there, so ask with a classic
        # server->client elicitation/create request instead.
        reply = await ctx.elicit("What is your name?", NameForm)
        return f"Hello, {reply.data.name}!" if reply.action == "accept" else "Hello, stranger!"
    answer = (ctx.input_responses or {}).get("user_name")
    if answer is None:
        caps = ctx.client_capabilities
        if caps is None or caps.elicitation is None:
            # Same error the SDK's own Resolve(Elicit) path raises (-32021, HTTP 400).
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="greet needs the elicitation client capability",
                data={"requiredCapabilities": {"elicitation": {}}},
            )
        # Round 1: ask the client to run an elicitation and retry with
        # inputResponses["user_name"] plus the (SDK-sealed) requestState.
        ask = ElicitRequest(
            params=ElicitRequestFormParams(
                message="What is your name?",
                requested_schema={
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                },
            )
        )
        return InputRequiredResult(input_requests={"user_name": ask}, request_state="awaiting-name")
    # Round 2: the SDK has already verified/unsealed requestState; we require it
    # so a gateway that drops it on the retry is caught.
    if ctx.request_state != "awaiting-name":
        raise ToolError("retry is missing the requestState from round 1")
    if not isinstance(answer, ElicitResult) or answer.action != "accept" or not answer.content:
        return "Hello, stranger!"
    return f"Hello, {answer.content.get('name')}!"


@mcp.tool(structured_output=False)  # plain text content, no outputSchema
async def progress(ctx: Context) -> str:
    """Send 3 progress notifications (only if the request carried a progressToken)."""
    for i in (1, 2, 3):
        await ctx.report_progress(i, 3, f"step {i}")  # no-op without a progressToken
        await asyncio.sleep(0.05)
    return "done"


@mcp.tool(structured_output=False)  # plain text content, no outputSchema
def whoami(ctx: Context) -> str:
    """Return the HTTP Authorization header this request arrived with, or "none"."""
    headers = ctx.headers or {}
    return headers.get("authorization", "none")


def modern_only(app):
    """ASGI guard: refuse everything that would reach the SDK's session-era path."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await app(scope, receive, send)  # modern (or unknown: the SDK rejects it itself)
        if scope["method"] != "POST":
            return await _reply(send, 405, b"", [(b"allow", b"POST")])
        body = b""
        while True:  # read the body to echo the request id (best effort)
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            req = json.loads(body)
        except ValueError:
            req = {}
        req = req if isinstance(req, dict) else {}
        params = req.get("params") if isinstance(req.get("params"), dict) else {}
        requested = version or params.get("protocolVersion") or ""
        rej = unsupported_protocol_version_rejection(str(requested), MODERN_PROTOCOL_VERSIONS)
        err = {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": rej.code, "message": rej.message, "data": rej.data}}
        await _reply(send, 400, json.dumps(err, separators=(",", ":")).encode(), [(b"content-type", b"application/json")])

    return guarded


async def _reply(send, status, body, headers):
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else 0
    # host=127.0.0.1 makes the SDK turn on its DNS-rebinding guard
    # (Host must match 127.0.0.1:*, localhost:* or [::1]:*).
    app = mcp.streamable_http_app(host=HOST)
    if "--modern-only" in sys.argv:
        app = modern_only(app)
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # startup includes the session manager's lifespan
        if serving.done():
            return await serving
        await asyncio.sleep(0.01)
    actual = server.servers[0].sockets[0].getsockname()[1]
    print(f"listening on http://{HOST}:{actual}/mcp", flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
