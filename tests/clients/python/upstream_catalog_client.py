"""Reads an upstream's resources, templates, prompts and completions through the cluster
with the official MCP Python SDK 2.x client.

    python upstream_catalog_client.py URL PREFIX MODE

MODE is the SDK's `mode`: "legacy" (initialize, a session) or "auto" (the SDK probes
`server/discover` and adopts 2026-07-28 when offered). Used by tests/tests/upstreams.rs.
Prints one JSON line of what the SDK got; nothing is asserted here.
"""

from __future__ import annotations

import json
import sys

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated

WATCHED = "test://watched-resource"


def text_of(content) -> str | None:
    return getattr(content, "text", None)


def method_of(message) -> str | None:
    for candidate in (message, getattr(message, "root", None)):
        method = getattr(candidate, "method", None)
        if isinstance(method, str):
            return method
    return None


def uri_of(message) -> str | None:
    for candidate in (message, getattr(message, "root", None)):
        params = getattr(candidate, "params", None)
        if params is not None and getattr(params, "uri", None) is not None:
            return str(params.uri)
    return None


async def main(url: str, prefix: str, mode: str) -> dict:
    report: dict = {}
    updated: list[str] = []
    got_update = anyio.Event()

    async def on_message(message) -> None:
        # A session client's resource updates arrive on its GET stream.
        if method_of(message) == "notifications/resources/updated":
            updated.append(uri_of(message) or "")
            got_update.set()

    async with Client(streamable_http_client(url), mode=mode, message_handler=on_message) as client:
        report["protocol_version"] = client.protocol_version
        report["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
        resources = (await client.list_resources()).resources
        report["resources"] = sorted([r.uri.__str__(), r.name] for r in resources)
        templates = (await client.list_resource_templates()).resource_templates
        report["templates"] = sorted([t.uri_template, t.name] for t in templates)
        text = await client.read_resource("test://static-text")
        report["static_text"] = [c.text for c in text.contents if hasattr(c, "text")]
        binary = await client.read_resource("test://static-binary")
        report["static_binary"] = [[c.mime_type, len(c.blob)] for c in binary.contents if hasattr(c, "blob")]
        data = await client.read_resource("test://template/7/data")
        report["template_data"] = [json.loads(c.text) for c in data.contents if hasattr(c, "text")]
        prompt = await client.get_prompt(prefix + "test_prompt_with_arguments", {"arg1": "x", "arg2": "y"})
        report["prompt"] = [text_of(m.content) for m in prompt.messages]
        image = await client.get_prompt(prefix + "test_prompt_with_image")
        report["prompt_image"] = [getattr(m.content, "mime_type", None) for m in image.messages]
        done = await client.complete(
            types.PromptReference(type="ref/prompt", name=prefix + "test_prompt_with_arguments"),
            {"name": "arg2", "value": "pa"},
        )
        report["complete_prompt"] = done.completion.values
        done = await client.complete(
            types.ResourceTemplateReference(type="ref/resource", uri="test://template/{id}/data"),
            {"name": "id", "value": "1"},
        )
        report["complete_template"] = done.completion.values

        # A subscription (session) or a listen stream (2026-07-28) hears the upstream's
        # update of a resource it watches.
        if client.protocol_version == "2026-07-28":
            with anyio.move_on_after(20):
                async with client.listen(resource_subscriptions=[WATCHED]) as subscription:
                    await client.call_tool(prefix + "update_watched_resource", {})
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            updated.append(str(event.uri))
                            break
        else:
            await client.subscribe_resource(WATCHED)
            await client.call_tool(prefix + "update_watched_resource", {})
            with anyio.move_on_after(20):
                await got_update.wait()
        report["updated"] = updated[:1]
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])))
