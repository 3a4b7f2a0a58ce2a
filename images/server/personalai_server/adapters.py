"""Check an adapter folder against its manifest before any engine loads it.

The trainer writes manifest.json with a sha256 for every file; `personalai_trainer.artifacts`
(standard library only, so importable in the server image without the trainer's dependencies)
checks them. The server never loads an adapter whose bytes changed since training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personalai_trainer.artifacts import ArtifactError, verify_adapter_dir

from .engines.base import AdapterError


def verify_adapter(path: Path, version: str) -> dict[str, Any]:
    """The manifest of the adapter at `path`, after every file's sha256 matched; else AdapterError."""
    if not path.is_dir():
        raise AdapterError(f"adapter {version} not found under adapter.dir")
    try:
        manifest = verify_adapter_dir(path)
    except ArtifactError as error:
        raise AdapterError(f"adapter {version} failed verification: {error}") from None
    declared = manifest.get("adapterVersion")
    if declared and declared != version:
        raise AdapterError(f"adapter folder {version} declares adapterVersion {declared}")
    return manifest
