"""Per-token limits: requests per minute (a sliding window) and concurrent streams.

Both answer "how many seconds until you may try again" so the API can send 429 with Retry-After.
The clock is injectable for tests. State lives in memory: one server process per PersonalAI.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str, per_minute: int) -> float:
        """Count a request; returns 0 when allowed, else the seconds until one is allowed (not counted)."""
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= per_minute:
            return max(hits[len(hits) - per_minute] + WINDOW_SECONDS - now, 0.001)
        hits.append(now)
        return 0.0


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class StreamSlots:
    """Concurrent generations per token; a slot is held from the first byte to the last."""

    RETRY_SECONDS = 1.0

    def __init__(self):
        self._active: dict[str, int] = {}

    def try_acquire(self, key: str, limit: int) -> bool:
        if self._active.get(key, 0) >= limit:
            return False
        self._active[key] = self._active.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        left = self._active.get(key, 0) - 1
        if left > 0:
            self._active[key] = left
        else:
            self._active.pop(key, None)

    def active(self, key: str | None = None) -> int:
        return sum(self._active.values()) if key is None else self._active.get(key, 0)
