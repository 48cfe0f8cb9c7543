// POSTs a large body that the gateway refuses before reading it, with Node's fetch (the
// fetch the TypeScript SDK's Streamable HTTP transport uses), and prints the status each
// case got as one JSON line: {"case": 413, ...}, or {"case": "error: ..."} when the
// response was lost to a connection reset.
//
// Usage: node refused.mjs URL TOKEN CASE...   (cases: 413-declared 413-chunked 401 403 415)

const [url, token, ...cases] = process.argv.slice(2);
const MIB = 1024 * 1024;
const CHUNK = 64 * 1024;
const head = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"');
const tail = Buffer.from('"}}');

// The whole body at once: undici declares its length and writes as fast as it can.
function whole(total) {
  return Buffer.concat([head, Buffer.alloc(total, 0x78), tail]);
}

// 64 KiB at a time with a pause, chunked: the client is still sending when refused.
function slowly(total) {
  let sent = -1;
  return new ReadableStream({
    async pull(controller) {
      if (sent < 0) {
        controller.enqueue(head);
        sent = 0;
      } else if (sent < total) {
        await new Promise((r) => setTimeout(r, 5));
        controller.enqueue(Buffer.alloc(CHUNK, 0x78));
        sent += CHUNK;
      } else {
        controller.enqueue(tail);
        controller.close();
      }
    },
  });
}

async function run(kase) {
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${token}`,
  };
  let body = whole(4 * MIB);
  if (kase === "413-chunked") body = slowly(4 * MIB);
  else if (kase === "401") delete headers.authorization;
  else if (kase === "403") headers.origin = "http://evil.example";
  else if (kase === "415") headers["content-type"] = "text/plain";
  else if (kase !== "413-declared") throw new Error(`unknown case ${kase}`);
  try {
    const r = await fetch(url, { method: "POST", headers, body, duplex: "half" });
    await r.text();
    return r.status;
  } catch (e) {
    return `error: ${e.name}: ${e.message} ${e.cause ? e.cause.code || e.cause.message : ""}`;
  }
}

const out = {};
for (const kase of cases) out[kase] = await run(kase);
console.log(JSON.stringify(out));
