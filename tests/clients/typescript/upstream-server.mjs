// An MCP server on the official TypeScript SDK (Streamable HTTP, a session per client,
// the SDK's own McpServer and transport), used as an upstream of the cluster by
// tests/tests/upstream_requests.rs. Its tools ask their client for sampling, elicitation
// and roots during the call, as real servers do.
//
//     node upstream-server.mjs PORT
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import * as z from 'zod/v4';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
    CreateMessageResultSchema,
    ElicitResultSchema,
    ListRootsResultSchema,
    isInitializeRequest
} from '@modelcontextprotocol/sdk/types.js';

const port = Number(process.argv[2] ?? 0);
// Requests of the tools' calls that their client cancelled (the call's signal aborted).
let aborted = 0;
// The outcome of sample_later's request.
let later = null;

function text(value) {
    return { content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }] };
}

function build() {
    const server = new McpServer({ name: 'ts-upstream', version: '1.0.0' }, { capabilities: { logging: {} } });
    // On the call's stream (the SDK relates extra.sendRequest to the request).
    server.registerTool(
        'summarize',
        { description: 'Summarize a text with the client\'s model (sampling)', inputSchema: { text: z.string() } },
        async ({ text: input }, extra) => {
            extra.signal.addEventListener('abort', () => {
                aborted += 1;
            });
            const result = await extra.sendRequest(
                {
                    method: 'sampling/createMessage',
                    params: {
                        messages: [{ role: 'user', content: { type: 'text', text: `Summarize: ${input}` } }],
                        maxTokens: 50
                    }
                },
                CreateMessageResultSchema
            );
            return text(`summary: ${result.content.text} (model ${result.model})`);
        }
    );
    server.registerTool(
        'ask',
        { description: 'Ask the user a question (form elicitation)', inputSchema: { question: z.string() } },
        async ({ question }, extra) => {
            const result = await extra.sendRequest(
                {
                    method: 'elicitation/create',
                    params: {
                        mode: 'form',
                        message: question,
                        requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] }
                    }
                },
                ElicitResultSchema
            );
            return text({ action: result.action, content: result.content ?? null });
        }
    );
    server.registerTool('roots', { description: 'The client\'s roots' }, async extra => {
        const result = await extra.sendRequest({ method: 'roots/list' }, ListRootsResultSchema);
        return text(result.roots.map(r => r.uri));
    });
    // Not related to the request: the SDK sends it on the session's GET stream.
    server.registerTool('summarize_unrelated', { description: 'Sampling sent on the GET stream', inputSchema: { text: z.string() } }, async ({ text: input }) => {
        const result = await server.server.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: input } }],
            maxTokens: 10
        });
        return text(`unrelated: ${result.content.text}`);
    });
    // Background work after the call has answered: its request goes on the GET stream and
    // belongs to no call; what the client answers is kept for `later`.
    server.registerTool('sample_later', { description: 'Sampling after the call returns' }, async () => {
        later = null;
        setTimeout(async () => {
            try {
                const result = await server.server.createMessage({
                    messages: [{ role: 'user', content: { type: 'text', text: 'later' } }],
                    maxTokens: 10
                });
                later = `answered: ${result.content.text}`;
            } catch (error) {
                later = `failed: ${error.message}`;
            }
        }, 50);
        return text('scheduled');
    });
    server.registerTool('later', { description: 'What the client answered to sample_later' }, async () => text({ later }));
    server.registerTool('log_level', { description: 'The log level this session set with logging/setLevel' }, async extra =>
        text({ level: server.server._loggingLevels.get(extra.sessionId) ?? null })
    );
    server.registerTool('aborted', { description: 'How many calls their client cancelled' }, async () => text({ aborted }));
    return server;
}

const transports = new Map();

async function body(req) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString();
    return raw ? JSON.parse(raw) : undefined;
}

const http = createServer(async (req, res) => {
    try {
        const sessionId = req.headers['mcp-session-id'];
        const parsed = req.method === 'POST' ? await body(req) : undefined;
        let transport = sessionId ? transports.get(sessionId) : undefined;
        if (!transport && req.method === 'POST' && !sessionId && isInitializeRequest(parsed)) {
            transport = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: id => transports.set(id, transport)
            });
            transport.onclose = () => {
                if (transport.sessionId) transports.delete(transport.sessionId);
            };
            await build().connect(transport);
        }
        if (!transport) {
            res.writeHead(sessionId ? 404 : 400, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'no such session' }, id: null }));
            return;
        }
        await transport.handleRequest(req, res, parsed);
    } catch (error) {
        console.error(error);
        if (!res.headersSent) {
            res.writeHead(500);
            res.end();
        }
    }
});

http.listen(port, '127.0.0.1', () => {
    console.log(`listening ${http.address().port}`);
});
