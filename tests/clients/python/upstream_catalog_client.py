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


def text_of(content) -> str | None:
    return getattr(content, "text", None)


async def main(url: str, prefix: str, mode: str) -> dict:
    report: dict = {}
    async with Client(streamable_http_client(url), mode=mode) as client:
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
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])))
