"""Resolve the absolute paths a pod sees (config, volumes, service-account files) on this host.

In a real pod the paths are used as they are. The development node agent runs a pod's
containers as local processes and lays each volume under a per-pod folder; it sets
PERSONALAI_PATH_PREFIX to that folder, and every path the trainer and server read or write
goes through `resolve` so the same pod spec works in both places.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX_ENV = "PERSONALAI_PATH_PREFIX"


def resolve(path: str | os.PathLike[str]) -> Path:
    """The host path for `path` as the pod sees it: prefixed when it is absolute and a prefix is set."""
    path = Path(path)
    prefix = os.environ.get(PREFIX_ENV, "")
    if prefix and path.is_absolute():
        return Path(prefix) / path.relative_to(path.anchor)
    return path
