"""Sends one broadcast through the official MCP Python SDK 2.x client.

    python broadcast.py URL MESSAGE

Used by tests/tests/browser.rs: the console page in a browser must show it. Prints one
JSON line: the negotiated protocol version and whether the call failed.
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, message: str) -> dict:
    async with Client(streamable_http_client(url), mode="auto") as client:
        result = await client.call_tool("broadcast", {"message": message, "level": "notice"})
        return {"protocol_version": client.protocol_version, "is_error": result.is_error}


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1], sys.argv[2])))
