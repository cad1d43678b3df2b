// The official TypeScript SDK client, over streamable HTTP or legacy SSE:
// `node ts-client.mjs URL streamable|sse`. Lists tools, calls echo (exits
// non-zero if that fails), calls progress, and prints one JSON line with what it
// saw, so that a run through mcpgate can be compared with a direct one.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [url, kind] = process.argv.slice(2);
const transport = kind === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "mcpgate-interop", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
if (!tools.some((t) => t.name === "echo")) throw new Error(`no echo tool in ${JSON.stringify(tools.map((t) => t.name))}`);
const echoed = await client.callTool({ name: "echo", arguments: { text: "interop" } });
if (echoed.content?.[0]?.text !== "interop") throw new Error(`echo returned ${JSON.stringify(echoed)}`);
let progress = 0;
const done = await client.callTool({ name: "progress", arguments: {} }, undefined, { onprogress: () => { progress += 1; } });
if (done.content?.[0]?.text === undefined) throw new Error(`progress returned ${JSON.stringify(done)}`);
if (kind !== "sse") await transport.terminateSession();
await client.close();
console.log(JSON.stringify({ url, kind, tools: tools.length, echo: true, progress }));
