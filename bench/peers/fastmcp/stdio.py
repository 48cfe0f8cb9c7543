"""The same FastMCP server (server.py, unchanged) over stdio, as an MCP host spawns it:

    python stdio.py

Used by tests/tests/upstreams.rs as a stdio upstream of a worker.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server import build  # noqa: E402

if __name__ == "__main__":
    build(0).run(transport="stdio")
