"""What every handler shares: the settings and typed parsing of a spec."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from personalai_operator.settings import OperatorSettings

SETTINGS = OperatorSettings.from_env()
Model = TypeVar("Model", bound=BaseModel)


class InvalidSpec(kopf.PermanentError):
    """The spec cannot be parsed; retrying will not help until it changes."""


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """Field paths and what is wrong with them; never the values (they may be personal)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        path = ".".join([prefix, *(str(part) for part in item["loc"])])
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)[:1000]


def namespace_of(kind: str, namespace: str | None) -> str:
    """kopf types `namespace` as optional (cluster-scoped kinds); ours are all namespaced."""
    if not namespace:
        raise kopf.PermanentError(f"{kind} has no metadata.namespace; it is a namespaced kind")
    return namespace


def parse_spec(model: type[Model], spec: Any) -> Model:
    try:
        return model.model_validate(dict(spec or {}))
    except ValidationError as error:
        raise InvalidSpec(describe_validation_error(error)) from None


_object_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def object_lock(kind: str, namespace: str, name: str) -> threading.Lock:
    """One reconcile at a time per object in this process (a timer and an event can coincide);
    across processes, deterministic names and create-if-absent keep it safe."""
    with _locks_guard:
        return _object_locks[(kind, namespace, name)]
