// A thin bridge from a Rust test to a real headless Chromium, over the DevTools protocol
// (puppeteer-core, pointed at Debian's /usr/bin/chromium or $CHROMIUM).
//
// Reads one JSON command per line on stdin, answers one JSON line on stdout:
//   {"op":"open","url":U}                      a new page at U (console output kept)
//   {"op":"eval","js":E}                       the value of expression E in the page
//   {"op":"wait","js":E,"timeout_ms":T}        waits until E is truthy; its value
//   {"op":"click","selector":S} / {"op":"fill","selector":S,"value":V}
//   {"op":"screenshot","path":P,"width":W,"height":H}
//   {"op":"logs"}                              the page's console lines and errors so far
// Answers {"ok":true,"value":...} or {"ok":false,"error":"..."}. EOF on stdin closes all.
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // Root in a container: no user namespaces for the sandbox; /dev/shm may be tiny.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
let page = null;
const logs = [];

async function run(cmd) {
  switch (cmd.op) {
    case 'open': {
      if (page) await page.close();
      page = await browser.newPage();
      await page.setViewport({ width: cmd.width ?? 1400, height: cmd.height ?? 900 });
      page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      page.on('requestfailed', (r) => logs.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
      const response = await page.goto(cmd.url, { waitUntil: 'load', timeout: 20000 });
      return response?.status() ?? null;
    }
    case 'eval':
      return await page.evaluate(cmd.js);
    case 'wait': {
      const handle = await page.waitForFunction(cmd.js, { timeout: cmd.timeout_ms ?? 10000, polling: 50 });
      return await handle.jsonValue();
    }
    case 'click':
      await page.click(cmd.selector);
      return null;
    case 'fill':
      await page.$eval(cmd.selector, (node, value) => { node.value = value; }, cmd.value);
      return null;
    case 'screenshot':
      if (cmd.width) await page.setViewport({ width: cmd.width, height: cmd.height ?? 900 });
      await page.screenshot({ path: cmd.path, type: 'png' });
      return cmd.path;
    case 'logs':
      return logs;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, value: (await run(JSON.parse(line))) ?? null };
  } catch (error) {
    answer = { ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await browser.close();
