"""Server-Sent Events framing: one `data: <json>` line per event, a blank line after each.

JSON never contains a raw newline (json.dumps escapes them), so one event is always one line, which
is what the chat page and simple clients rely on when they split the stream on "\\n".
"""

from __future__ import annotations

import json
from typing import Any

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"
# A frame that is OpenAI's end-of-stream marker, `data: [DONE]`, rather than JSON.
DONE = object()


def format_event(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def format_done() -> str:
    """OpenAI's end-of-stream marker."""
    return "data: [DONE]\n\n"


def format_frame(frame: Any) -> str:
    return format_done() if frame is DONE else format_event(frame)


def parse_events(text: str) -> list[Any]:
    """The JSON payloads of a complete SSE body, the way the chat page reads them."""
    events = []
    for line in text.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: "):]))
    return events
