"""How handlers retry: kopf's `backoff=` is one fixed number, so failures are turned into kopf's
TemporaryError with the delay of the shared policy (backoff.py) for that attempt."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import kopf
from kubernetes.client.rest import ApiException

from personalai_operator.backoff import BackoffPolicy
from personalai_operator.handlers.common import SETTINGS
from personalai_operator.kube import describe_api_error

Handler = TypeVar("Handler", bound=Callable[..., Any])
# Event handlers retry from the base delay; a resync timer from its own interval (it runs that often anyway).
BACKOFF = BackoffPolicy(SETTINGS.backoff_base_seconds, SETTINGS.backoff_cap_seconds)
RESYNC_BACKOFF = BackoffPolicy(SETTINGS.resync_seconds, max(SETTINGS.backoff_cap_seconds, SETTINGS.resync_seconds))


def backs_off(policy: BackoffPolicy = BACKOFF) -> Callable[[Handler], Handler]:
    """A kopf handler whose failures come back as TemporaryError with the policy's delay for that
    attempt (kopf's `retry` kwarg). kopf's own errors pass through: they already say what to do.
    Put it under the kopf decorators."""
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def handle(*args: Any, retry: int = 0, **kwargs: Any) -> Any:
            try:
                return handler(*args, retry=retry, **kwargs)
            except (kopf.PermanentError, kopf.TemporaryError):
                raise
            except Exception as error:
                delay = policy.delay(retry, error)
                # The API's status and reason, or the error's type: never a message that may quote an object.
                what = describe_api_error(error) if isinstance(error, ApiException) else type(error).__name__
                raise kopf.TemporaryError(f"{what}; retry {retry + 1} in {delay:.1f}s", delay=delay) from error
        return cast(Handler, handle)
    return decorate
