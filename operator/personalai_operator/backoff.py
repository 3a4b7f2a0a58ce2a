"""How long a failed reconcile waits before its next try: exponential, capped, jittered, and never
sooner than the API's own Retry-After (a 429 from API priority and fairness, or a 503).

Pure: `retry_delay` takes the attempt number kopf counts (the handler's `retry` kwarg) and the error.
The jitter spreads out the retries of many objects that failed together, so a recovering API server
is not met by all of them in the same second.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client.rest import ApiException


@dataclass(frozen=True)
class BackoffPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, retry: int, error: BaseException | None = None,
              jitter: Callable[[], float] = random.random, now: float | None = None) -> float:
        """Seconds before attempt `retry + 1`: base * 2**retry, capped, then "equal jitter" (between
        half and all of it, so delays still grow); at least the error's Retry-After, itself capped so
        a bogus header cannot park an object for an hour."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(max(retry, 0), 32))
        delay = ceiling / 2 + jitter() * ceiling / 2
        asked = retry_after_seconds(error, now)
        if asked is not None:
            delay = max(delay, min(asked, self.cap_seconds))
        return round(delay, 3)


def retry_after_seconds(error: BaseException | None, now: float | None = None) -> float | None:
    """The Retry-After of an ApiException in seconds (delta-seconds or an HTTP date); None without one."""
    headers = getattr(error, "headers", None) if isinstance(error, ApiException) else None
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unparseable: the policy's own delay applies
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
