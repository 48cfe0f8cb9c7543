"""A FastMCP server (Python SDK 1.x) with resources, a resource template, prompts and
completions that carry the optional fields of their descriptors (title, annotations,
icons, _meta), over stdio:

    python catalog.py

Used by tests/tests/upstreams.rs as a stdio upstream: what it lists must reach the
cluster's clients with every field.
"""

from __future__ import annotations

from mcp.server.fastmcp import FastMCP
from mcp.types import Annotations, Completion, Icon, PromptReference, ResourceTemplateReference

ICON = Icon(src="https://example.com/icon.png", mimeType="image/png")


def build() -> FastMCP:
    mcp = FastMCP("catalog")

    @mcp.resource(
        "note://readme",
        name="readme",
        title="Read me",
        description="The first note",
        mime_type="text/markdown",
        icons=[ICON],
        annotations=Annotations(audience=["user"], priority=0.5),
        meta={"example.com/kind": "note"},
    )
    def readme() -> str:
        return "# Notes\nThe first note."

    @mcp.resource(
        "note://items/{item}",
        name="item",
        title="An item",
        description="One item by id",
        mime_type="text/plain",
        meta={"example.com/kind": "item"},
    )
    def item(item: str) -> str:
        return f"item {item}"

    @mcp.prompt(name="summarize", title="Summarize", description="Summarize a topic", icons=[ICON])
    def summarize(topic: str) -> str:
        return f"Summarize {topic}."

    @mcp.completion()
    async def complete(ref, argument, context):
        if isinstance(ref, PromptReference) and argument.name == "topic":
            options = ["apples", "apricots", "bananas"]
        elif isinstance(ref, ResourceTemplateReference) and argument.name == "item":
            options = ["a1", "a2", "b1"]
        else:
            return None
        return Completion(values=[o for o in options if o.startswith(argument.value)])

    return mcp


if __name__ == "__main__":
    build().run(transport="stdio")
