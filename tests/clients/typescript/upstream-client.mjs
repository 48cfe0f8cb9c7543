// The official TypeScript SDK client answering an upstream's sampling and elicitation
// through the cluster (driven by tests/tests/upstream_requests.rs).
//
//     node upstream-client.mjs http://127.0.0.1:PORT/mcp
//
// Declares sampling, elicitation and roots and answers each with a fixed result that
// names what it was asked; calls the upstream's tools (prefix `ts_`); prints ONE JSON
// line with the results and the requests the client saw.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const url = process.argv[2];
const asked = [];

const client = new Client(
    { name: 'ts-sdk-behind-gateway', version: '0.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: {} } }
);
client.setRequestHandler(CreateMessageRequestSchema, async request => {
    const prompt = request.params.messages[0].content.text;
    asked.push({ method: 'sampling/createMessage', prompt });
    return { role: 'assistant', content: { type: 'text', text: `ts-sdk read "${prompt}"` }, model: 'ts-sdk-model' };
});
client.setRequestHandler(ElicitRequestSchema, async request => {
    asked.push({ method: 'elicitation/create', message: request.params.message });
    return { action: 'accept', content: { answer: 'from the ts sdk' } };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
    asked.push({ method: 'roots/list' });
    return { roots: [{ uri: 'file:///ts', name: 'ts' }] };
});

const watchdog = setTimeout(() => {
    process.stderr.write(`upstream-client.mjs: still running after 30 s; asked: ${JSON.stringify(asked)}\n`);
    process.exit(1);
}, 30_000);
watchdog.unref();

await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const text = result => result.content?.[0]?.text ?? null;
const summarize = await client.callTool({ name: 'ts_summarize', arguments: { text: 'the TS client' } });
const ask = await client.callTool({ name: 'ts_ask', arguments: { question: 'Who answers?' } });
const roots = await client.callTool({ name: 'ts_roots', arguments: {} });
await client.close();
console.log(JSON.stringify({ summarize: text(summarize), ask: text(ask), roots: text(roots), asked }));
