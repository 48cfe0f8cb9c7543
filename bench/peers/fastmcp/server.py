"""Reference peer: the demo tools (shared/demo-tools.md) on the Python SDK's FastMCP,
the way the seed guide builds its server (Streamable HTTP, sessions in process memory).

    python server.py --port 8100

Deviations from the contract, where the SDK allows no closer match:
- broadcast reaches the sessions this process knows; FastMCP has no list of sessions, so
  each session is recorded when it sends notifications/initialized (a patch of
  ServerSession._received_notification) and forgotten when a send to it fails.
- resumption needs an EventStore; the SDK ships only an example one, so a small bounded
  in-memory store (1024 events per stream) is defined here.
- logging/setLevel is kept per session in a dict (the SDK does not filter by level).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import weakref
from collections import deque
from typing import Annotated, Literal

from pydantic import Field

import mcp.types as types
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.session import ServerSession
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId

Level = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]

# Every session that finished initialization, for broadcast.
SESSIONS: "weakref.WeakSet[ServerSession]" = weakref.WeakSet()
# logging/setLevel per session.
LOG_LEVELS: "weakref.WeakKeyDictionary[ServerSession, str]" = weakref.WeakKeyDictionary()
TASKS: set[asyncio.Task] = set()
TASK_IDS = itertools.count(1)
JOBS_IN_FLIGHT = 0

_original_received_notification = ServerSession._received_notification


async def _received_notification(self: ServerSession, notification: types.ClientNotification) -> None:
    await _original_received_notification(self, notification)
    if isinstance(notification.root, types.InitializedNotification):
        SESSIONS.add(self)


ServerSession._received_notification = _received_notification  # type: ignore[method-assign]


class MemoryEventStore(EventStore):
    """Bounded in-memory event store: the last `per_stream` events of each stream."""

    def __init__(self, per_stream: int = 1024) -> None:
        self.per_stream = per_stream
        self.streams: dict[StreamId, deque[tuple[EventId, types.JSONRPCMessage | None]]] = {}
        self.index: dict[EventId, StreamId] = {}
        self.counter = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        event_id = f"{next(self.counter)}"
        events = self.streams.setdefault(stream_id, deque())
        if len(events) >= self.per_stream:
            old_id, _ = events.popleft()
            self.index.pop(old_id, None)
        events.append((event_id, message))
        self.index[event_id] = stream_id
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        stream_id = self.index.get(last_event_id)
        if stream_id is None:
            return None
        found = False
        for event_id, message in list(self.streams.get(stream_id, ())):
            if found and message is not None:
                await send_callback(EventMessage(message, event_id))
            elif event_id == last_event_id:
                found = True
        return stream_id


def level_allows(session: ServerSession, level: str) -> bool:
    minimum = LOG_LEVELS.get(session, "debug")
    return LEVELS.index(level) >= LEVELS.index(minimum)


def build(port: int, host: str = "127.0.0.1") -> FastMCP:
    mcp = FastMCP("fastmcp-peer", host=host, port=port, event_store=MemoryEventStore(), log_level="WARNING")

    @mcp._mcp_server.set_logging_level()
    async def set_level(level: types.LoggingLevel) -> None:
        LOG_LEVELS[mcp.get_context().request_context.session] = level

    @mcp.tool(description="Send one log message on this request's stream")
    async def send_notification(message: str, ctx: Context, level: Level = "info") -> str:
        if level_allows(ctx.session, level):
            await ctx.session.send_log_message(level, message, logger="notify", related_request_id=ctx.request_id)
        return f"notification sent: {message}"

    @mcp.tool(description="Send a log message to every session's standalone stream")
    async def broadcast(message: str, ctx: Context, level: Level = "info") -> str:
        sent = 0
        for session in list(SESSIONS):
            if not level_allows(session, level):
                continue
            try:
                await session.send_log_message(level, message, logger="broadcast")
                sent += 1
            except Exception:  # a closed session
                SESSIONS.discard(session)
        return f"broadcast sent to {sent} sessions"

    @mcp.tool(description="A long operation that reports progress")
    async def long_running_operation(
        ctx: Context,
        steps: Annotated[int, Field(ge=1, le=10000)] = 5,
        step_ms: Annotated[int, Field(ge=0, le=60000)] = 100,
    ) -> str:
        global JOBS_IN_FLIGHT
        JOBS_IN_FLIGHT += 1
        try:
            for i in range(1, steps + 1):
                if step_ms:
                    await asyncio.sleep(step_ms / 1000)
                await ctx.report_progress(i, steps, f"step {i}/{steps}")
        finally:
            JOBS_IN_FLIGHT -= 1
        return f"operation completed: {steps} steps"

    @mcp.tool(description="Start a background task that notifies the standalone stream")
    async def start_background_task(
        name: str,
        ctx: Context,
        count: Annotated[int, Field(ge=1, le=1000)] = 5,
        interval_ms: Annotated[int, Field(ge=10, le=60000)] = 1000,
    ) -> str:
        task_id = f"{name}-{next(TASK_IDS)}"
        session = ctx.session

        async def run() -> None:
            for tick in range(1, count + 1):
                await asyncio.sleep(interval_ms / 1000)
                if level_allows(session, "info"):
                    data = {"task": name, "id": task_id, "tick": tick, "of": count}
                    await session.send_log_message("info", data, logger=f"task/{name}")

        task = asyncio.create_task(run())
        TASKS.add(task)
        task.add_done_callback(TASKS.discard)
        return f"started background task {task_id}"

    @mcp.tool(description="Server status")
    async def server_status() -> str:
        return json.dumps({"gateways": 1, "sessions": len(SESSIONS), "workers": 1, "jobs_in_flight": JOBS_IN_FLIGHT})

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8100)
    # Loopback by default (FastMCP then also checks the Host header); a container serving
    # other containers (docker-compose.yml's upstream) listens on 0.0.0.0.
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    build(args.port, args.host).run(transport="streamable-http")


if __name__ == "__main__":
    main()
