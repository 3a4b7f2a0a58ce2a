"""The operator's audit stream: one JSON line per erasure or promotion, never personal content.

A dedicated logger that does not propagate, so the records neither mix with nor depend on the
operator's log format; where it writes is a setting (stderr, or a file that outlives the pod's log, rotated at midnight UTC
with PERSONALAI_AUDIT_KEEP_DAYS days of it kept).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from logging.handlers import TimedRotatingFileHandler
from typing import Any

_logger = logging.getLogger("personalai.audit")
_configured = threading.Lock()


def _handler(destination: str, keep_days: int) -> logging.Handler:
    if destination in ("", "stderr"):
        return logging.StreamHandler(sys.stderr)
    return TimedRotatingFileHandler(destination, when="midnight", utc=True, backupCount=keep_days, encoding="utf-8")


def write(record: dict[str, Any], destination: str, keep_days: int) -> None:
    """Append `record` (built by erasure.py or promotion.py's callers: kinds, counts, names, versions)."""
    with _configured:
        if not _logger.handlers:
            handler = _handler(destination, keep_days)
            handler.setFormatter(logging.Formatter("%(message)s"))
            _logger.addHandler(handler)
            _logger.setLevel(logging.INFO)
            _logger.propagate = False
    _logger.info(json.dumps(record, sort_keys=True, separators=(",", ":")))


def subject(personalai: Mapping[str, Any]) -> dict[str, Any]:
    """Which PersonalAI a record is about: namespace, name and uid (the uid tells two of one name apart)."""
    metadata = personalai["metadata"]
    return {"namespace": metadata["namespace"], "personalai": metadata["name"], "uid": metadata.get("uid")}


def promotion_record(personalai: Mapping[str, Any], current: Mapping[str, Any],
                     previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """A promoted adapter: its version, run and manifest digest (identifiers, not content)."""
    return {"time": now, "event": "promotion", **subject(personalai), "adapterVersion": current.get("version"),
            "trainingRun": current.get("trainingRun"), "manifestSha256": current.get("manifestSha256"),
            "previousVersion": (previous or {}).get("version")}
