"""Check an adapter folder against its manifest before any engine loads it.

The trainer writes manifest.json with a sha256 for every file; `personalai_trainer.artifacts
.verify_adapter_dir` (importable without torch) checks them. Until that helper is installed, the
same contract is checked here, so the server never loads an adapter whose bytes changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .engines.base import AdapterError

REQUIRED_FILES = ("adapter_config.json", "manifest.json")


def verify_adapter(path: Path, version: str) -> dict[str, Any]:
    """The manifest of the adapter at `path`, after every file's sha256 matched; else AdapterError."""
    if not path.is_dir():
        raise AdapterError(f"adapter {version} not found at {path}")
    try:
        from personalai_trainer.artifacts import verify_adapter_dir
    except ImportError:
        verify_adapter_dir = verify_manifest
    try:
        manifest = verify_adapter_dir(path)
    except AdapterError:
        raise
    except Exception as error:  # the trainer's helper has its own error types
        raise AdapterError(f"adapter {version} failed verification: {error}") from None
    declared = manifest.get("adapterVersion") if isinstance(manifest, dict) else None
    if declared and declared != version:
        raise AdapterError(f"adapter folder {version} declares adapterVersion {declared}")
    return manifest


def verify_manifest(path: Path) -> dict[str, Any]:
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise AdapterError(f"adapter at {path} has no {name}")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise AdapterError(f"manifest at {path} lists no files")
    for weights in [*path.glob("adapter_model.*"), path / "adapter_config.json"]:
        if weights.is_file() and weights.name not in files:
            raise AdapterError(f"manifest at {path} does not cover {weights.name}")
    for name, expected in files.items():
        target = (path / name).resolve()
        if path.resolve() not in target.parents or not target.is_file():
            raise AdapterError(f"manifest at {path} lists a missing or outside file {name}")
        if sha256_file(target) != expected:
            raise AdapterError(f"sha256 of {name} in {path} does not match the manifest")
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
