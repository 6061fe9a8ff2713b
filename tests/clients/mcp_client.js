// Drives ringcast-mcp with the official MCP client (@modelcontextprotocol/sdk, StdioClientTransport):
// initialize, list the tools, call each one, then the bad calls. Prints one JSON line with what
// it saw; test_mcp.py checks it.
//   node mcp_client.js MCP_BINARY URL API_KEY CHANNEL
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");

async function main() {
  const [bin, url, key, channel] = process.argv.slice(2);
  const transport = new StdioClientTransport({
    command: bin,
    args: ["--url", url, "--api-key", key, "--timeout-ms", "5000"],
    stderr: "inherit",
  });
  const client = new Client({ name: "ringcast-test", version: "1.0.0" });
  await client.connect(transport);
  const out = {
    serverVersion: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
  };
  out.tools = (await client.listTools()).tools;
  const call = async (name, args) => {
    const r = await client.callTool({ name, arguments: args });
    return { isError: !!r.isError, text: r.content.map((c) => c.text).join("") };
  };
  out.calls = {
    health: await call("websocket_health_check", {}),
    status: await call("websocket_get_status", {}),
    broadcast: await call("websocket_broadcast_test_event", { channel, message: "héllo \"mcp\"" }),
    rooms: await call("websocket_list_rooms", { prefix: channel.slice(0, 4), limit: 10 }),
    metrics: await call("websocket_get_metrics", {}),
    badChannel: await call("websocket_broadcast_test_event", { channel: "bad\u0001name" }),
  };
  // Bad calls: JSON-RPC errors (McpError carries the code).
  const expectError = async (fn) => {
    try {
      const r = await fn();
      return { ok: true, result: r };
    } catch (e) {
      return { code: e.code, message: e.message };
    }
  };
  out.errors = {
    unknownTool: await expectError(() => client.callTool({ name: "no_such_tool", arguments: {} })),
    missingChannel: await expectError(() =>
      client.callTool({ name: "websocket_broadcast_test_event", arguments: {} })),
    extraArg: await expectError(() =>
      client.callTool({ name: "websocket_health_check", arguments: { verbose: true } })),
    badLimit: await expectError(() =>
      client.callTool({ name: "websocket_list_rooms", arguments: { limit: 0 } })),
    unknownMethod: await expectError(() =>
      client.request({ method: "resources/list", params: {} },
        require("@modelcontextprotocol/sdk/types.js").ListResourcesResultSchema)),
  };
  out.ping = await client.ping();
  await client.close();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack || e) }));
  process.exit(1);
});
