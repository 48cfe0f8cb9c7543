"""Drives gateways through the official MCP Python SDK 2.x client at protocol 2026-07-28.

    python stateless_client.py URL [URL ...]

One SDK `Client` per URL, each in `mode="auto"`: the SDK probes `server/discover` and
adopts 2026-07-28 only if the server offers it, so the negotiated version is itself a
finding. The calls alternate between the clients (so between gateways when given two
URLs), and one multi round-trip call is started on the first URL and finished on the
last, which works only if every gateway and worker can verify the signed requestState.

Prints one JSON line with everything observed; `tests/tests/python_client.rs` judges it.
Nothing is asserted here, so a failure shows the whole report rather than one line.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from importlib.metadata import version
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated

# Headers the 2026-07-28 transport sets or must not set, recorded per HTTP request.
WATCHED_HEADERS = (
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "mcp-param-greeting",
    "mcp-session-id",
    "accept",
)
WATCHED = "test://watched-resource"
STEP_TIMEOUT = 20


def http_recorder(url: str, client: str, http: list[dict[str, Any]]) -> httpx2.AsyncClient:
    """An HTTP client that notes every request's method, MCP headers and answer."""

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        http.append(
            {
                "client": client,
                "url": url,
                "method": request.method,
                "headers": {h: request.headers.get(h) for h in WATCHED_HEADERS if h in request.headers},
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "session_id": response.headers.get("mcp-session-id"),
            }
        )

    # The SDK's own defaults: a long read timeout, since a server may hold a stream open.
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"response": [on_response]},
    )


def text_of(result: Any) -> str:
    """The text of the first text content of a tool result (a list) or a prompt message (one)."""
    content = getattr(result, "content", None)
    for item in content if isinstance(content, list) else [content]:
        if getattr(item, "type", None) == "text":
            return item.text
    return ""


async def main(urls: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "sdk_version": version("mcp"),
        "urls": urls,
        "http": [],
        "clients": [],
        "steps": {},
        "errors": [],
    }
    http: list[dict[str, Any]] = report["http"]
    elicitations: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        elicitations.append({"message": params.message})
        if "context" in params.message:
            return types.ElicitResult(action="accept", content={"context": "from-python"})
        return types.ElicitResult(action="accept", content={"name": "Alice"})

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append({"level": params.level, "logger": params.logger, "data": params.data})

    def client_for(url: str, http_client: httpx2.AsyncClient) -> Client:
        return Client(
            streamable_http_client(url, http_client=http_client),
            mode="auto",
            elicitation_callback=elicit,
            logging_callback=on_log,
            client_info=types.Implementation(name="python-interop", version="1"),
            # Every step below must reach a gateway: a cached answer would prove nothing.
            cache=None,
        )

    async def step(name: str, body: Any) -> None:
        """Runs one step; an exception is recorded and the next step still runs."""
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                report["steps"][name] = await body()
        except Exception as e:  # noqa: BLE001 - the report names every failure
            report["errors"].append({"step": name, "error": repr(e), "trace": traceback.format_exc()})

    clients = []
    async with contextlib.AsyncExitStack() as stack:

        async def connect(url: str, label: str) -> Client:
            # A client the transport is given is not closed by it: the stack closes it.
            http_client = await stack.enter_async_context(http_recorder(url, label, http))
            return await stack.enter_async_context(client_for(url, http_client))

        for i, url in enumerate(urls):
            clients.append(await connect(url, str(i)))
        for url, client in zip(urls, clients):
            report["clients"].append(
                {
                    "url": url,
                    "protocol_version": client.protocol_version,
                    "server_info": client.server_info.model_dump() if client.server_info else None,
                    "capabilities": client.server_capabilities.model_dump(by_alias=True, exclude_none=True),
                    "discover": discover_dump(client),
                }
            )
        a, b = clients[0], clients[-1]

        async def list_tools() -> Any:
            listed = {}
            # Both clients list: tools/call mirrors x-mcp-header arguments only for
            # listed tools, and each gateway serves the list from the shared registry.
            for i, client in enumerate(clients):
                result = await client.list_tools()
                listed[str(i)] = sorted(t.name for t in result.tools)
            return listed

        async def progress() -> Any:
            seen: list[dict[str, Any]] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                seen.append({"progress": value, "total": total, "message": message})

            result = await b.call_tool(
                "long_running_operation", {"steps": 5, "step_ms": 0}, progress_callback=on_progress
            )
            return {"progress": seen, "text": text_of(result), "is_error": result.is_error}

        async def elicitation() -> Any:
            before = len(elicitations)
            result = await a.call_tool("test_input_required_result_elicitation", {})
            return {"text": text_of(result), "is_error": result.is_error, "asked": len(elicitations) - before}

        async def elicitation_across_gateways() -> Any:
            # Round one on the first gateway, driven by hand; the retry on the last.
            first = await a.session.call_tool(
                "test_input_required_result_elicitation", {}, allow_input_required=True
            )
            if not isinstance(first, types.InputRequiredResult):
                return {"first_result_type": type(first).__name__}
            keys = sorted((first.input_requests or {}).keys())
            answers = {key: types.ElicitResult(action="accept", content={"name": "Bob"}) for key in keys}
            result = await b.call_tool(
                "test_input_required_result_elicitation",
                {},
                input_responses=answers,
                request_state=first.request_state,
            )
            return {
                "first_result_type": "InputRequiredResult",
                "input_request_keys": keys,
                "input_request_methods": [r.method for r in (first.input_requests or {}).values()],
                "has_request_state": first.request_state is not None,
                "text": text_of(result),
                "is_error": result.is_error,
            }

        async def read_resource() -> Any:
            result = await a.read_resource("test://static-text")
            return [c.model_dump(by_alias=True, exclude_none=True) for c in result.contents]

        async def get_prompt() -> Any:
            result = await b.get_prompt("test_prompt_with_arguments", {"arg1": "one", "arg2": "two"})
            return [text_of(m) for m in result.messages]

        async def prompt_with_input() -> Any:
            result = await a.get_prompt("test_input_required_result_prompt")
            return [text_of(m) for m in result.messages]

        async def mirrored_header() -> Any:
            result = await b.call_tool("test_custom_header_tool", {"greeting": "Grüße"})
            return {"text": text_of(result), "is_error": result.is_error}

        async def header_mismatch_recovery() -> Any:
            # A client that never listed tools cannot know test_custom_header_tool mirrors
            # its argument: the gateway refuses the call (-32020), and the SDK's recovery
            # is to list the tools and send the call again, with the header.
            async with (
                http_recorder(urls[-1], "fresh", http) as http_client,
                client_for(urls[-1], http_client) as fresh,
            ):
                result = await fresh.call_tool("test_custom_header_tool", {"greeting": "hi"})
            return {"text": text_of(result), "is_error": result.is_error}

        async def logging() -> Any:
            before = len(logs)
            result = await a.call_tool(
                "test_logging_tool", {}, meta={"io.modelcontextprotocol/logLevel": "warning"}
            )
            return {"text": text_of(result), "logs": logs[before:]}

        async def listen() -> Any:
            # Subscribed on the last gateway; the change is made through the first.
            async with b.listen(resource_subscriptions=[WATCHED]) as subscription:
                honored = subscription.honored.model_dump(by_alias=True, exclude_none=True)
                changed = await a.call_tool("update_watched_resource", {})
                events = []
                async for event in subscription:
                    events.append(repr(event))
                    if isinstance(event, ResourceUpdated) and event.uri == WATCHED:
                        break
                return {"honored": honored, "changed": text_of(changed), "events": events}

        await step("tools", list_tools)
        await step("progress", progress)
        await step("elicitation", elicitation)
        await step("elicitation_across_gateways", elicitation_across_gateways)
        await step("read_resource", read_resource)
        await step("get_prompt", get_prompt)
        await step("prompt_with_input", prompt_with_input)
        await step("mirrored_header", mirrored_header)
        await step("header_mismatch_recovery", header_mismatch_recovery)
        await step("logging", logging)
        await step("listen", listen)
    return report


def discover_dump(client: Client) -> Any:
    result = client.session.discover_result
    return None if result is None else result.model_dump(by_alias=True, exclude_none=True)


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1:]), default=str))
