"""Server-Sent Events as a browser's EventSource reads them: `retry:` once, then `id:` and one
`data: <json>` line per event, a blank line after each, and comment lines as heartbeats.

JSON never holds a raw newline (json.dumps escapes them), so one event's data is always one line.
"""

from __future__ import annotations

import json
from typing import Any

SSE_MEDIA_TYPE = "text/event-stream"
# no-cache: a proxy must not hold the stream; X-Accel-Buffering: nginx passes each event on at once.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def retry_frame(milliseconds: int) -> str:
    """How long an EventSource waits before it reconnects after the stream ends."""
    return f"retry: {int(milliseconds)}\n\n"


def event_frame(payload: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def heartbeat_frame() -> str:
    """A comment line: keeps idle proxies from closing the connection; EventSource ignores it."""
    return ": heartbeat\n\n"


def parse_stream(text: str) -> list[dict]:
    """The events of an SSE body as EventSource would dispatch them: {"id", "data"} (data parsed as JSON)."""
    events, event_id = [], None
    for block in text.split("\n\n"):
        data = []
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = line[len("id: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        if data:
            events.append({"id": event_id, "data": json.loads("\n".join(data))})
    return events
