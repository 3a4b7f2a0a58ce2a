"""The chat server's audit stream: who did what to this PersonalAI's server, when, and with what outcome;
never what was said.

One JSON line per event (personalai_contracts.audit), e.g.
  {"time":"2026-12-01T15:30:00.123Z","event":"auth","personalai":"luke","outcome":"failure",
   "transport":"websocket","client":"10.0.0.7","reason":"unknown_token"}

Events: `auth` (HTTP and WebSocket, success or failure), `session.create`, `session.delete`,
`adapter.load` (at start and on a reload, with the version and its manifest sha256),
`sessions.purge` (how many retention removed) and `adapters.forget` (how many adapters the remote
engine was told to unload at erasure). Only the identifiers in FIELDS can be recorded. Where it goes
is the config's `audit` section: "stderr", or a file rotated each UTC day, audit.keepDays kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from personalai_contracts import audit

from .config import Audit

# Identifiers only: a token's digest prefix (Principal.short_id), never the token; no text of any kind.
FIELDS = frozenset({"owner", "client", "transport", "path", "reason", "session", "adapterVersion",
                    "manifestSha256", "trigger", "count", "retentionDays"})


class AuditLog(audit.AuditLog):
    def __init__(self, settings: Audit, personal_ai: str, clock: Callable[[], float] = time.time):
        super().__init__(settings.sink, settings.keep_days, FIELDS, {"personalai": personal_ai}, clock)
