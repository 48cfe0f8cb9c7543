// Interop flows of the official TypeScript MCP SDK client against a running gateway.
//
// Usage: node flows.mjs http://127.0.0.1:PORT/mcp
//
// Prints ONE JSON line on stdout with everything observed, and exits 0; on any error prints
// the error on stderr and exits 1. The assertions live in tests/tests/typescript_client.rs;
// this script only fails on things that make the rest of the run meaningless (a request that
// errors, a bounded wait that runs out).
//
// Besides what the SDK reports, the script watches the HTTP exchanges through the SDK's
// `fetch` option: every request (method, JSON-RPC method, status, content type) and, for each
// SSE response, the messages it carried, so the test can tell on which stream (the
// standalone GET stream or a POST response stream) each notification arrived.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { readFileSync } from 'node:fs';

const WAIT_LIMIT_MS = 10_000;
const POLL_MS = 50;
const WATCHDOG_MS = 50_000;

const url = process.argv[2];
if (!url) {
    process.stderr.write('usage: node flows.mjs <MCP endpoint URL>\n');
    process.exit(2);
}

const started = Date.now();
const elapsed = () => Date.now() - started;

// ---- what we observe -------------------------------------------------------------------

/** `notifications/message` params as the SDK delivered them, in arrival order. */
const logMessages = [];
/** Every HTTP exchange the transport made. */
const http = [];
/** Every JSON-RPC message seen on an SSE response, tagged with the stream it came on. */
const sse = [];
/** Errors the transport / protocol layer reported through `onerror` (not fatal by themselves),
 *  before the session was deleted, and from then on (until the client is closed). */
const transportErrors = [];
const transportErrorsAfterDelete = [];
let deleting = false;
/** Standalone GET streams: state of each one the transport opened. */
const getStreams = [];
let closing = false;

// ---- a fetch that watches ---------------------------------------------------------------

function rpcLabel(body) {
    if (typeof body !== 'string') return null;
    try {
        const msg = JSON.parse(body);
        const one = Array.isArray(msg) ? msg[0] : msg;
        if (!one) return null;
        if (one.method === 'tools/call') return `tools/call ${one.params?.name}`;
        return one.method ?? (one.id !== undefined ? `response ${one.id}` : null);
    } catch {
        return null;
    }
}

/** Reads one branch of an SSE body, recording the JSON-RPC messages it carries. */
async function watchSse(stream, via, stateOfGet) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    const flushEvent = (block) => {
        let id = null;
        let event = null;
        const data = [];
        for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon === -1 ? line : line.slice(0, colon);
            let value = colon === -1 ? '' : line.slice(colon + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'data') data.push(value);
            else if (field === 'id') id = value;
            else if (field === 'event') event = value;
        }
        if (data.join('').trim() === '') {
            // Priming event (an id and empty data) or keep-alive.
            if (id !== null) sse.push({ via, event_id: id, priming: true, at_ms: elapsed() });
            return;
        }
        let msg = null;
        try {
            msg = JSON.parse(data.join('\n'));
        } catch {
            msg = { unparsable: data.join('\n') };
        }
        sse.push({
            via,
            event_id: id,
            event,
            method: msg.method ?? null,
            id: msg.id ?? null,
            logger: msg.params?.logger ?? null,
            level: msg.params?.level ?? null,
            data: msg.params?.data ?? null,
            progress: msg.params?.progress ?? null,
            is_response: msg.method === undefined && msg.id !== undefined,
            at_ms: elapsed(),
        });
    };
    try {
        while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, '\n');
            let end;
            while ((end = buf.indexOf('\n\n')) !== -1) {
                flushEvent(buf.slice(0, end));
                buf = buf.slice(end + 2);
            }
        }
        if (stateOfGet) stateOfGet.ended_at_ms = elapsed();
    } catch (e) {
        if (stateOfGet) {
            stateOfGet.ended_at_ms = elapsed();
            stateOfGet.ended_by = closing ? 'client close' : `error: ${e?.message ?? e}`;
        }
    }
}

async function watchingFetch(input, init = {}) {
    const method = (init.method ?? 'GET').toUpperCase();
    const label = method === 'POST' ? rpcLabel(init.body) : null;
    const entry = { method, rpc: label, sent_at_ms: elapsed() };
    http.push(entry);
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.content_type = response.headers.get('content-type');
    entry.session = response.headers.get('mcp-session-id');
    const isSse = (entry.content_type ?? '').toLowerCase().startsWith('text/event-stream');
    if (!isSse || !response.body) return response;
    let stateOfGet = null;
    if (method === 'GET') {
        stateOfGet = { opened_at_ms: elapsed(), status: response.status, last_event_id: init.headers?.get?.('last-event-id') ?? null };
        getStreams.push(stateOfGet);
    }
    const [forSdk, forUs] = response.body.tee();
    watchSse(forUs, method === 'GET' ? 'GET' : `POST ${label}`, stateOfGet);
    return new Response(forSdk, { status: response.status, statusText: response.statusText, headers: response.headers });
}

// ---- helpers ----------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every POLL_MS until it holds; throws `what` after WAIT_LIMIT_MS. */
async function waitFor(what, cond) {
    const deadline = Date.now() + WAIT_LIMIT_MS;
    while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_LIMIT_MS} ms waiting for ${what}`);
        await sleep(POLL_MS);
    }
}

function textOf(result) {
    return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');
}

const results = {};
async function call(key, name, args, options) {
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    results[key] = { text: textOf(result), is_error: result.isError === true };
    if (result.isError) throw new Error(`tool ${name} returned an error: ${results[key].text}`);
    return result;
}

const logged = (pred) => logMessages.some(pred);

function sdkVersion() {
    try {
        const pkg = new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url);
        return JSON.parse(readFileSync(pkg, 'utf8')).version ?? null;
    } catch {
        return null;
    }
}

// ---- the flows --------------------------------------------------------------------------

const watchdog = setTimeout(() => {
    process.stderr.write(`flows.mjs: watchdog: still running after ${WATCHDOG_MS} ms\n`);
    process.stderr.write(JSON.stringify({ logMessages, http, sse }) + '\n');
    process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

const client = new Client({ name: 'mcp-notify-gateway-e2e-ts', version: '0.0.0' }, { capabilities: {} });
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logMessages.push({ logger: n.params.logger ?? null, level: n.params.level, data: n.params.data, at_ms: elapsed() });
});
client.onerror = (e) => {
    if (closing) return;
    (deleting ? transportErrorsAfterDelete : transportErrors).push(String(e?.message ?? e));
};

const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: watchingFetch });

async function main() {
    await client.connect(transport);
    const out = {
        sdk_version: sdkVersion(),
        requested_protocol_version: LATEST_PROTOCOL_VERSION,
        protocol_version: transport.protocolVersion ?? null,
        session_id: transport.sessionId ?? null,
        server_info: client.getServerVersion() ?? null,
        server_capabilities: client.getServerCapabilities() ?? null,
    };

    // The SDK opens the standalone GET stream by itself once `notifications/initialized` is
    // accepted (202), without awaiting it; the tools below that deliver on that stream are
    // only meaningful once it is open, so wait for it (bounded) rather than racing it.
    await waitFor('the SDK to open the standalone GET SSE stream', () => getStreams.length > 0);
    out.get_stream_open_after_ms = getStreams[0].opened_at_ms;

    const tools = await client.listTools();
    out.tools = tools.tools.map((t) => t.name);

    await call('send_notification', 'send_notification', { message: 'from-ts', level: 'warning' });

    const progress = [];
    await call('long_running_operation', 'long_running_operation', { steps: 5, step_ms: 10 }, {
        onprogress: (p) => progress.push(p),
    });
    out.progress = progress.map((p) => p.progress);
    out.progress_detail = progress;

    await call('start_background_task', 'start_background_task', { name: 'ts', count: 3, interval_ms: 50 });
    await call('broadcast', 'broadcast', { message: 'ts-broadcast' });

    await waitFor('3 task/ts ticks and the broadcast', () =>
        logMessages.filter((m) => m.logger === 'task/ts').length >= 3 &&
        logged((m) => m.logger === 'broadcast' && m.data === 'ts-broadcast'));

    await call('server_status', 'server_status', {});
    try {
        out.server_status = JSON.parse(results.server_status.text);
    } catch (e) {
        throw new Error(`server_status text is not JSON: ${results.server_status.text}`);
    }

    // Log level filtering, last: from now on only `error` and above.
    await client.setLoggingLevel('error');
    await call('send_notification_filtered', 'send_notification', { message: 'filtered', level: 'info' });
    await call('send_notification_after_filter', 'send_notification', { message: 'after-filter', level: 'error' });
    // `after-filter` travels on its request's stream ahead of that request's result, so by
    // now it is normally here already; the bounded wait only covers a slow delivery.
    await waitFor('the after-filter message', () => logged((m) => m.data === 'after-filter'));
    out.filtered_arrived = logged((m) => m.data === 'filtered');
    out.after_filter_arrived = logged((m) => m.data === 'after-filter');

    // Session end: DELETE, then the old session id must be unknown (404).
    const oldSession = transport.sessionId;
    deleting = true;
    await transport.terminateSession();
    out.session_id_after_terminate = transport.sessionId ?? null;
    const probe = await fetch(url, {
        method: 'POST',
        headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-session-id': oldSession,
            'mcp-protocol-version': transport.protocolVersion,
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 'probe', method: 'tools/list' }),
    });
    await probe.body?.cancel();
    out.status_after_terminate = probe.status;
    // Give the server a moment (bounded) to end the GET stream of the deleted session.
    const getEnded = () => getStreams.length > 0 && getStreams.every((g) => g.ended_at_ms !== undefined);
    try {
        await waitFor('the GET stream to end after DELETE', getEnded);
    } catch {
        /* reported below as get_streams[*].ended_at_ms missing */
    }

    closing = true;
    await client.close();

    out.results = results;
    out.log_messages = logMessages;
    out.get_streams = getStreams;
    out.http = http;
    out.sse = sse;
    out.transport_errors = transportErrors;
    out.transport_errors_after_delete = transportErrorsAfterDelete;
    out.elapsed_ms = elapsed();
    return out;
}

main().then(
    (out) => {
        process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
    },
    (err) => {
        process.stderr.write(`flows.mjs failed: ${err?.stack ?? err}\n`);
        process.stderr.write(`observed so far: ${JSON.stringify({ results, logMessages, http, sse, transportErrors, getStreams })}\n`);
        process.exit(1);
    },
);
