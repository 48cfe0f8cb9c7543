"""One principal's view of a gateway under a policy, through the official MCP Python SDK.

    python policy.py URL TOKEN ALLOWED_TOOL FORBIDDEN_TOOL

Connects twice with the bearer TOKEN: once in the session protocol (`mode="legacy"`, the
initialize handshake) and once in `mode="auto"` (the SDK probes `server/discover` and
adopts 2026-07-28 when the server offers it, so the negotiated version is itself a
finding). In each: lists the tools, calls ALLOWED_TOOL, calls FORBIDDEN_TOOL.

Prints one JSON line of what it observed; `tests/tests/policies.rs` judges it. Nothing is
asserted here, so a failure shows the whole report rather than one line.
"""

from __future__ import annotations

import json
import sys
import traceback
from importlib.metadata import version
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

STEP_TIMEOUT = 20
# The tools this script knows how to call with valid arguments.
ARGUMENTS = {"server_status": {}, "send_notification": {"message": "from python"}}


async def call(client: Client, name: str) -> dict[str, Any]:
    """A tool call's outcome: its result, or the JSON-RPC error the SDK raised."""
    try:
        result = await client.call_tool(name, ARGUMENTS.get(name, {}))
    except MCPError as e:
        return {"ok": False, "code": e.code, "message": e.message}
    return {"ok": not result.is_error, "is_error": result.is_error}


async def view(url: str, token: str, mode: str, allowed: str, forbidden: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        # cache=None: every step must reach a gateway, a cached answer would prove nothing.
        async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
            with anyio.fail_after(STEP_TIMEOUT):
                tools = sorted(t.name for t in (await client.list_tools()).tools)
                return {
                    "protocol_version": client.protocol_version,
                    "tools": tools,
                    "allowed": await call(client, allowed),
                    "forbidden": await call(client, forbidden),
                }


async def main(url: str, token: str, allowed: str, forbidden: str) -> dict[str, Any]:
    report: dict[str, Any] = {"sdk_version": version("mcp"), "views": {}, "errors": []}
    for mode in ("legacy", "auto"):
        try:
            report["views"][mode] = await view(url, token, mode, allowed, forbidden)
        except Exception as e:  # noqa: BLE001 - the report names every failure
            report["errors"].append({"mode": mode, "error": repr(e), "trace": traceback.format_exc()})
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, *sys.argv[1:5])))
