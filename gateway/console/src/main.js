// The gateway's console: a browser MCP client of this gateway's own /mcp, built on the
// official TypeScript SDK (bundled into dist/console.js by `npm run build`).
//
// It shows the tools (a form per tool from its input schema), a call's progress and log
// messages, the session's standalone stream (broadcasts, background tasks, other
// messages), the cluster's status and the connection's state. When the standalone
// stream drops, the SDK reconnects with Last-Event-ID; the fetch wrapper below sees that
// and says so. Everything shown is also kept in `window.mcpConsole` for tests.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const STATUS_EVERY_MS = 3000;
const FEED_MAX = 200;

const view = {
  state: 'idle',
  detail: '',
  sessionId: null,
  protocolVersion: null,
  tools: [],
  messages: [],
  broadcasts: [],
  tasks: {},
  calls: [],
  resumes: [],
  status: null,
  errors: [],
};
window.mcpConsole = view;

const $ = (id) => document.getElementById(id);
let client = null;
let lastEventId = null; // of the standalone GET stream

function setState(state, detail = '') {
  view.state = state;
  view.detail = detail;
  const badge = $('connection');
  badge.dataset.state = state;
  badge.textContent = detail ? `${state}: ${detail}` : state;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function time() {
  return new Date().toISOString().slice(11, 23);
}

function feed(list, entry, text) {
  const li = el(
    'li',
    {},
    el('span', { class: 'time' }, entry.time),
    el('span', { class: `level level-${entry.level}` }, entry.level),
    el('span', { class: 'logger' }, entry.logger ?? ''),
    el('span', {}, text),
  );
  list.prepend(li);
  while (list.children.length > FEED_MAX) list.lastChild.remove();
}

function note(text) {
  const li = el('li', { class: 'note' }, el('span', { class: 'time' }, time()), el('span', {}, text));
  $('messages').prepend(li);
}

// --- the standalone stream, seen through fetch -------------------------------------

// Watches the GET stream's event ids, so a reconnection can be reported (and resumes
// from the last id even when the SDK lost track of it: a reconnected stream that ended
// before its first event).
function watchingFetch(input, init = {}) {
  const method = (init.method ?? 'GET').toUpperCase();
  if (method !== 'GET') return fetch(input, init);
  const headers = new Headers(init.headers);
  let resumingFrom = headers.get('last-event-id');
  if (!resumingFrom && lastEventId) {
    resumingFrom = lastEventId;
    headers.set('last-event-id', lastEventId);
  }
  if (resumingFrom) setState('reconnecting', `resuming from event ${resumingFrom}`);
  return fetch(input, { ...init, headers }).then((response) => {
    if (!response.ok || !response.body) {
      if (resumingFrom) setState('reconnecting', `HTTP ${response.status}`);
      return response;
    }
    if (resumingFrom) {
      view.resumes.push({ time: time(), from: resumingFrom });
      setState('resumed', `from event ${resumingFrom}, nothing lost`);
      note(`stream resumed with Last-Event-ID ${resumingFrom}: missed events replayed`);
    } else {
      setState('connected');
    }
    const decoder = new TextDecoder();
    let partial = '';
    const tap = new TransformStream({
      transform(chunk, controller) {
        partial += decoder.decode(chunk, { stream: true });
        const lines = partial.split('\n');
        partial = lines.pop();
        for (const line of lines) {
          if (line.startsWith('id:')) lastEventId = line.slice(3).trim();
        }
        controller.enqueue(chunk);
      },
      flush() {
        if (view.state !== 'idle') setState('reconnecting', 'stream ended');
      },
    });
    const body = response.body.pipeThrough(tap);
    return new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  }, (error) => {
    setState('reconnecting', String(error.message ?? error));
    throw error;
  });
}

// --- notifications ----------------------------------------------------------------

function onLog({ params }) {
  const entry = { time: time(), level: params.level, logger: params.logger ?? '', data: params.data };
  const logger = entry.logger;
  if (logger === 'broadcast') {
    view.broadcasts.push(entry);
    feed($('broadcasts'), entry, typeof params.data === 'string' ? params.data : JSON.stringify(params.data));
    return;
  }
  if (logger.startsWith('task/') && params.data && typeof params.data === 'object') {
    onTick(logger.slice(5), params.data);
  }
  if (logger === 'notify' && currentCall) {
    currentCall.logs.push(entry);
    feed($('call-log'), entry, String(params.data));
  }
  view.messages.push(entry);
  if (view.messages.length > FEED_MAX) view.messages.shift();
  feed($('messages'), entry, typeof params.data === 'string' ? params.data : JSON.stringify(params.data));
}

function onTick(name, data) {
  const task = (view.tasks[name] ??= { name, id: data.id, of: data.of, ticks: [], duplicates: 0 });
  if (task.ticks.includes(data.tick)) task.duplicates += 1;
  else task.ticks.push(data.tick);
  task.of = data.of;
  const gaps = [];
  for (let i = 1; i < Math.max(...task.ticks); i++) if (!task.ticks.includes(i)) gaps.push(i);
  task.gaps = gaps;
  renderTasks();
}

function renderTasks() {
  const box = $('tasks');
  box.replaceChildren(
    ...Object.values(view.tasks).map((t) => {
      const done = t.ticks.length;
      const health = t.gaps?.length ? `missing ${t.gaps.join(',')}` : t.duplicates ? `${t.duplicates} duplicates` : 'no gap';
      return el(
        'div',
        { class: 'task', 'data-task': t.name },
        el('div', {}, `${t.name}: tick ${done}/${t.of} (${health})`),
        el('progress', { value: done, max: t.of }),
      );
    }),
  );
}

// --- tools and calls --------------------------------------------------------------

let currentCall = null;

function fieldFor(name, schema, required) {
  const label = el('label', {}, el('span', {}, required ? `${name}*` : name));
  let input;
  if (Array.isArray(schema.enum)) {
    input = el('select', { name });
    for (const v of schema.enum) input.append(el('option', { value: v, selected: v === schema.default }, v));
  } else if (schema.type === 'integer' || schema.type === 'number') {
    input = el('input', { name, type: 'number' });
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
    if (schema.default !== undefined) input.value = schema.default;
    input.step = schema.type === 'integer' ? '1' : 'any';
  } else if (schema.type === 'boolean') {
    input = el('input', { name, type: 'checkbox', checked: schema.default === true });
  } else {
    input = el('input', { name, type: 'text' });
    if (schema.default !== undefined) input.value = schema.default;
  }
  input.dataset.type = schema.type ?? 'string';
  input.required = required;
  if (schema.description) label.title = schema.description;
  label.append(input);
  return label;
}

function argumentsOf(form) {
  const args = {};
  for (const input of form.querySelectorAll('input, select')) {
    const type = input.dataset.type;
    if (type === 'boolean') args[input.name] = input.checked;
    else if (input.value === '') continue;
    else if (type === 'integer' || type === 'number') args[input.name] = Number(input.value);
    else args[input.name] = input.value;
  }
  return args;
}

function renderTools() {
  $('tools').replaceChildren(
    ...view.tools.map((tool) => {
      const schema = tool.inputSchema ?? {};
      const required = new Set(schema.required ?? []);
      const form = el('form', { class: 'tool', 'data-tool': tool.name });
      form.append(el('h3', {}, tool.name), el('p', {}, tool.description ?? ''));
      for (const [name, prop] of Object.entries(schema.properties ?? {})) {
        form.append(fieldFor(name, prop, required.has(name)));
      }
      form.append(el('button', { type: 'submit' }, 'Run'));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        runTool(tool.name, argumentsOf(form));
      });
      return form;
    }),
  );
}

async function runTool(name, args) {
  const call = { name, args, progress: [], logs: [], result: null, error: null, started: time() };
  currentCall = call;
  view.calls.push(call);
  $('call-name').textContent = `${name} ${JSON.stringify(args)}`;
  $('call-progress').value = 0;
  $('call-progress').max = 1;
  $('call-message').textContent = 'running…';
  $('call-result').textContent = '';
  $('call-log').replaceChildren();
  try {
    const result = await client.callTool({ name, arguments: args }, undefined, {
      onprogress: (p) => {
        call.progress.push(p);
        $('call-progress').max = p.total ?? Math.max(p.progress, 1);
        $('call-progress').value = p.progress;
        $('call-message').textContent = p.message ?? `${p.progress}/${p.total ?? '?'}`;
      },
      // Long operations are the point of the demo: the SDK's 60 s default would cut them.
      timeout: 3_600_000,
      resetTimeoutOnProgress: true,
    });
    call.result = result;
    const text = (result.content ?? []).map((c) => c.text ?? JSON.stringify(c)).join('\n');
    $('call-result').textContent = text;
    $('call-message').textContent = result.isError ? 'failed' : 'done';
  } catch (error) {
    call.error = String(error.message ?? error);
    $('call-result').textContent = call.error;
    $('call-message').textContent = 'error';
  } finally {
    call.finished = time();
    if (currentCall === call) currentCall = null;
  }
}

async function refreshTools() {
  const { tools } = await client.listTools();
  view.tools = tools;
  renderTools();
}

async function refreshStatus() {
  if (!client || view.state === 'idle') return;
  try {
    const result = await client.callTool({ name: 'server_status', arguments: {} });
    const status = JSON.parse(result.content?.[0]?.text ?? '{}');
    view.status = status;
    $('status').tBodies[0].replaceChildren(
      ...Object.entries(status).map(([k, v]) =>
        el('tr', {}, el('td', {}, k), el('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))),
      ),
    );
  } catch (error) {
    view.errors.push(`server_status: ${error.message ?? error}`);
  }
}

// --- connecting -------------------------------------------------------------------

async function connect(token) {
  setState('connecting');
  // The gateway's own /mcp, unless the page names another endpoint (a page on another
  // origin, as in the CORS test).
  const endpoint = document.querySelector('meta[name=mcp-endpoint]')?.content || '/mcp';
  const transport = new StreamableHTTPClientTransport(new URL(endpoint, window.location.href), {
    fetch: watchingFetch,
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
    // A gateway going away is routine (a rolling update): keep trying, the stream resumes.
    reconnectionOptions: {
      initialReconnectionDelay: 500,
      maxReconnectionDelay: 5000,
      reconnectionDelayGrowFactor: 1.5,
      maxRetries: 20,
    },
  });
  client = new Client({ name: 'mcp-notify-gateway-console', version: '0.1.0' });
  client.setNotificationHandler(LoggingMessageNotificationSchema, onLog);
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    note('tools changed');
    refreshTools().catch(() => {});
  });
  client.onerror = (error) => view.errors.push(String(error.message ?? error));
  try {
    await client.connect(transport);
  } catch (error) {
    const text = String(error.message ?? error);
    if (error.code === 401 || /401|unauthori[sz]ed/i.test(text)) {
      setState('unauthorized', 'enter a token');
      $('auth').hidden = false;
    } else {
      setState('error', text);
    }
    client = null;
    return;
  }
  $('auth').hidden = true;
  view.sessionId = transport.sessionId;
  view.protocolVersion = transport.protocolVersion ?? client.getServerVersion()?.version;
  $('session').textContent = `session ${transport.sessionId ?? '(none)'}`;
  if (view.state === 'connecting') setState('connected');
  await refreshTools();
  await refreshStatus();
  setInterval(refreshStatus, STATUS_EVERY_MS);
}

$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  connect($('token').value.trim());
});

connect(new URLSearchParams(window.location.hash.slice(1)).get('token') ?? '');
