// The official TypeScript SDK client under a gateway policy (tests/tests/policies.rs).
//
// Usage: node policy.mjs <MCP endpoint URL> <bearer token> <tool to try>
//
// Connects with the token, lists the tools, calls the given tool, and prints ONE JSON line:
// {"tools": [...sorted names], "call": {"ok": bool, "code": n, "message": "..."}}.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token, tool] = process.argv.slice(2);
if (!url || !token || !tool) {
    process.stderr.write('usage: node policy.mjs <url> <token> <tool>\n');
    process.exit(2);
}
const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'policy-e2e', version: '1.0.0' });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
let call;
try {
    const result = await client.callTool({ name: tool, arguments: { message: 'from the TypeScript SDK' } });
    call = { ok: !result.isError };
} catch (e) {
    call = { ok: false, code: e.code, message: e.message };
}
await client.close();
process.stdout.write(JSON.stringify({ tools, call }) + '\n');
