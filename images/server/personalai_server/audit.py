"""The audit stream: who did what to this PersonalAI's server, when, and with what outcome; never what was said.

One JSON line per event, e.g.
  {"time":"2026-12-01T15:30:00.123Z","event":"auth","personalai":"luke","outcome":"failure",
   "transport":"websocket","client":"10.0.0.7","reason":"unknown_token"}

Events: `auth` (HTTP and WebSocket, success or failure), `session.create`, `session.delete`,
`adapter.load` (at start and on a reload, with the version and its manifest sha256) and
`sessions.purge` (how many retention removed). Only the identifiers in FIELDS can be recorded, so
message text, titles, tokens or reflections cannot be passed by mistake: another keyword is a
programming error (ValueError), found by the first test that reaches it.

Where it goes is the config's `audit` section: "stderr", or a file that is renamed
`<file>.<YYYY-MM-DD>` when the first record of a later UTC day comes, keeping the newest
audit.keepDays of those.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from personalai_contracts.paths import resolve

from .config import Audit

log = logging.getLogger(__name__)

STDERR = "stderr"
# Identifiers only: a token's digest prefix (Principal.short_id), never the token; no text of any kind.
FIELDS = frozenset({"owner", "client", "transport", "path", "reason", "session", "adapterVersion",
                    "manifestSha256", "trigger", "count", "retentionDays"})


class AuditLog:
    def __init__(self, settings: Audit, personal_ai: str, clock: Callable[[], float] = time.time):
        self._path = None if settings.sink == STDERR else resolve(settings.sink)
        self._keep_days = settings.keep_days
        self._personal_ai = personal_ai
        self._clock = clock
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._day: str | None = None  # the UTC day the open file holds

    def record(self, event: str, outcome: str = "success", **identifiers: str | int | None) -> None:
        """Write one event; identifiers that are None are left out."""
        unknown = identifiers.keys() - FIELDS
        if unknown:
            raise ValueError(f"audit fields {sorted(unknown)} are not identifiers the audit stream may hold")
        now = self._clock()
        entry = {"time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "event": event, "personalai": self._personal_ai, "outcome": outcome,
                 **{key: value for key, value in identifiers.items() if value is not None}}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                stream = self._stream(_utc_day(now))
                stream.write(line)
                stream.flush()
            except OSError as error:
                # A full or failing disk does not take the chat down with it; the gap is in the logs.
                log.error("audit record %s not written: %s", event, error.strerror)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _stream(self, day: str) -> TextIO:
        if self._path is None:
            return sys.stderr
        if self._file is None or day != self._day:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._rotate_before(day)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: the stream says who talked to the PersonalAI and when.
            descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(descriptor, "a", encoding="utf-8")
            self._day = day
        return self._file

    def _rotate_before(self, day: str) -> None:
        """A file holding an earlier day (by its modification time when this process did not write it)
        is renamed after that day, and rotated files past audit.keepDays are deleted."""
        try:
            written = self._day or _utc_day(self._path.stat().st_mtime)
        except FileNotFoundError:
            return
        if written >= day:
            return
        self._path.rename(self._path.with_name(f"{self._path.name}.{written}"))
        rotated = sorted(self._path.parent.glob(f"{glob.escape(self._path.name)}.????-??-??"))
        for old in rotated[:-self._keep_days]:
            old.unlink(missing_ok=True)


def _utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()
