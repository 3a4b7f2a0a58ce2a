"""Bounded waiting: every wait in the project's tests and tools goes through `wait_for`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5, message: str = "condition") -> T:
    """Call `predicate` until it returns something truthy; raise TimeoutError after `timeout` seconds.

    Exceptions from the predicate count as "not yet" (an API that is still starting), and the last
    one is chained to the TimeoutError so a failure says why.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - any error means "not ready yet"
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}") from last_error
        time.sleep(interval)
