"""POSTs a large body, slowly, that the gateway refuses before reading it, with the HTTP
client of the official MCP Python SDK (httpx), and prints the status each case got as one
JSON line: {"case": 413, ...}, or {"case": "error: ..."} when the response was lost (a
connection reset eats it).

Usage: refused.py URL TOKEN CASE...   (cases: 413-declared 413-chunked 401 403 415 429)
"""

import json
import sys
import time

try:  # The SDK 2.x ships httpx as `httpx2`.
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

MIB = 1024 * 1024
CHUNK = 64 * 1024


def slowly(total):
    """`total` bytes of a JSON string, 64 KiB at a time with a pause: the client is still
    sending when the gateway answers."""
    yield b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"'
    sent = 0
    while sent < total:
        yield b"x" * CHUNK
        sent += CHUNK
        time.sleep(0.005)
    yield b'"}}'


def length(total):
    return str(total + len(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"') + 3)


def run(client, url, token, case):
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {token}",
    }
    size = 4 * MIB
    if case == "413-declared":
        headers["content-length"] = length(size)
    elif case == "413-chunked":
        pass
    elif case == "401":
        del headers["authorization"]
        headers["content-length"] = length(size)
    elif case == "403":
        headers["origin"] = "http://evil.example"
        headers["content-length"] = length(size)
    elif case == "415":
        headers["content-type"] = "text/plain"
        headers["content-length"] = length(size)
    elif case == "429":
        # The first request takes the only token of the bucket; the second is refused.
        client.post(url, headers=headers, content=b"{}")
        headers["content-length"] = length(size)
    else:
        raise SystemExit(f"unknown case {case}")
    try:
        return client.post(url, headers=headers, content=slowly(size)).status_code
    except Exception as e:  # noqa: BLE001 - the point is to report what the client saw
        return f"error: {type(e).__name__}: {e}"


def main():
    url, token, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
    out = {}
    with httpx.Client(timeout=30) as client:
        for case in cases:
            out[case] = run(client, url, token, case)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
