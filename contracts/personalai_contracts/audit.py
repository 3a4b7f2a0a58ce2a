"""An audit stream shared by the chat server and the gateway: one JSON line per event, identifiers only.

    log = AuditLog("/data/audit.jsonl", keep_days=90, fields=FIELDS, subject={"personalai": "luke"})
    log.record("auth", "failure", transport="http", reason="no_token")
      -> {"time":"2026-12-01T15:30:00.123Z","event":"auth","personalai":"luke","outcome":"failure",...}

Only the keywords in `fields` can be recorded, so message text, tokens or reflections cannot be
passed by mistake: another keyword is a programming error (ValueError), found by the first test that
reaches it. The sink is "stderr" or a file (through the path prefix) that is renamed
`<file>.<YYYY-MM-DD>` when the first record of a later UTC day comes, keeping the newest `keep_days`
of those. Files are owner-only: the stream says who talked to whom and when.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from personalai_contracts.paths import resolve

log = logging.getLogger(__name__)

STDERR = "stderr"
# A mapping only of such scalars (e.g. the knobs a start set: numbers, booleans).
Value = str | int | float | bool | Mapping[str, str | int | float | bool] | None


class AuditLog:
    def __init__(self, sink: str, keep_days: int, fields: frozenset[str], subject: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time):
        if keep_days < 1:
            raise ValueError("audit keep_days must be at least 1")
        self._path = None if sink == STDERR else resolve(sink)
        self._keep_days = keep_days
        self._fields = fields
        self._subject = dict(subject or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._day: str | None = None  # the UTC day the open file holds

    def record(self, event: str, outcome: str = "success", **identifiers: Value) -> None:
        """Write one event; identifiers that are None are left out."""
        unknown = identifiers.keys() - self._fields
        if unknown:
            raise ValueError(f"audit fields {sorted(unknown)} are not identifiers the audit stream may hold")
        now = self._clock()
        entry = {"time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "event": event, **self._subject, "outcome": outcome,
                 **{key: value for key, value in identifiers.items() if value is not None}}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                stream = self._stream(_utc_day(now))
                stream.write(line)
                stream.flush()
            except OSError as error:
                # A full or failing disk does not take the service down with it; the gap is in the logs.
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
            self._rotate_before(self._path, day)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(descriptor, "a", encoding="utf-8")
            self._day = day
        return self._file

    def _rotate_before(self, path: Path, day: str) -> None:
        """A file holding an earlier day (by its modification time when this process did not write it)
        is renamed after that day, and rotated files past keep_days are deleted."""
        try:
            written = self._day or _utc_day(path.stat().st_mtime)
        except FileNotFoundError:
            return
        if written >= day:
            return
        path.rename(path.with_name(f"{path.name}.{written}"))
        rotated = sorted(path.parent.glob(f"{glob.escape(path.name)}.????-??-??"))
        for old in rotated[:-self._keep_days]:
            old.unlink(missing_ok=True)


def _utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()
