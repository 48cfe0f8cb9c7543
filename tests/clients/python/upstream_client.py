"""Drives the seed's FastMCP server through the cluster with the official MCP Python SDK
2.x client (session protocol: initialize, then a GET stream).

    python upstream_client.py URL PREFIX

Used by tests/tests/upstreams.rs. Prints one JSON line: the tools listed, the progress
and log messages the SDK's callbacks saw, and the calls' results.
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, prefix: str) -> dict:
    logs: list[dict] = []
    progress: list[list] = []
    ticks = anyio.Event()

    async def on_log(params) -> None:
        logs.append({"level": params.level, "logger": params.logger, "data": params.data})
        if sum(1 for entry in logs if str(entry["logger"]).startswith("task/")) >= 3:
            ticks.set()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append([value, total, message])

    report: dict = {}
    async with Client(streamable_http_client(url), mode="legacy", logging_callback=on_log) as client:
        report["protocol_version"] = client.protocol_version
        report["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        long = await client.call_tool(
            prefix + "long_running_operation", {"steps": 5, "step_ms": 20}, progress_callback=on_progress
        )
        report["long"] = [c.text for c in long.content]
        report["progress"] = list(progress)
        await client.set_logging_level("info")
        sent = await client.call_tool(prefix + "send_notification", {"message": "hello upstream", "level": "info"})
        quiet = await client.call_tool(prefix + "send_notification", {"message": "too quiet", "level": "debug"})
        report["sent"] = [c.text for c in sent.content] + [c.text for c in quiet.content]
        started = await client.call_tool(prefix + "start_background_task", {"name": "bg", "count": 3, "interval_ms": 30})
        report["started"] = [c.text for c in started.content]
        with anyio.move_on_after(20):
            await ticks.wait()
        report["logs"] = list(logs)
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1], sys.argv[2])))
