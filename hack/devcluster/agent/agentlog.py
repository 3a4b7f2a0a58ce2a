"""Structured log lines of the development node agent (logfmt on stderr).

Only names, ids, counts and reasons go into a line: never environment values, file contents or
API response bodies, which may hold a person's data.
"""

from __future__ import annotations

import datetime
import sys
import threading

_lock = threading.Lock()


def _format(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def log(event: str, level: str = "info", **fields: object) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    parts = [f"time={stamp}", f"level={level}", "component=dev-node-agent", f"event={event}"]
    parts += [f"{key}={_format(value)}" for key, value in fields.items() if value is not None]
    with _lock:
        print(" ".join(parts), file=sys.stderr, flush=True)
