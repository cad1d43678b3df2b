// An independent legacy HTTP+SSE MCP server, built on the official TypeScript
// SDK, for scripts/interop: mcpgate's SSE backend against someone else's server.
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { z } from "zod";

const transports = new Map();

function makeServer() {
  const server = new McpServer({ name: "ts-sse-server", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Returns its text", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  server.registerTool(
    "progress",
    { description: "Reports progress twice", inputSchema: {} },
    async (_args, extra) => {
      const token = extra._meta?.progressToken;
      if (token !== undefined) {
        for (const p of [1, 2]) {
          await extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: p, total: 2 } });
        }
      }
      return { content: [{ type: "text", text: "done" }] };
    },
  );
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/sse") {
    const transport = new SSEServerTransport("/messages", res);
    transports.set(transport.sessionId, transport);
    res.on("close", () => transports.delete(transport.sessionId));
    await makeServer().connect(transport);
  } else if (req.method === "POST" && url.pathname === "/messages") {
    const transport = transports.get(url.searchParams.get("sessionId"));
    if (!transport) {
      res.writeHead(404).end("unknown session");
      return;
    }
    await transport.handlePostMessage(req, res);
  } else if (req.method === "GET" && url.pathname === "/stats") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ sessions: transports.size }));
  } else {
    res.writeHead(404).end();
  }
});
httpServer.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${httpServer.address().port}/sse`);
});
