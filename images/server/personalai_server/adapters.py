"""Check an adapter folder against its manifest before any engine loads it.

The trainer writes manifest.json with a sha256 for every file; `personalai_contracts.artifacts`
(standard library only, so importable in the server image without the trainer's dependencies)
checks them. The server never loads an adapter whose bytes changed since training.

The manifest's own sha256 is the adapter's digest: `write_manifest` returns it, the trainer reports
it (TrainingRun status.artifact.manifestSha256), and the operator passes the served version's in the
server config (adapter.manifestSha256). A folder whose manifest has another digest is refused even
when its files match that manifest: it was rewritten, or is another person's adapter put in its place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personalai_contracts.artifacts import MANIFEST, ArtifactError, manifest_digest, verify_adapter_dir

from .engines.base import AdapterError


class AdapterDigestError(AdapterError):
    """The adapter's manifest is not the one whose sha256 the operator recorded."""


def check_digest(path: Path, version: str, expected: str) -> None:
    """AdapterDigestError unless the folder's manifest has sha256 `expected` (digests only, never contents)."""
    try:
        actual = manifest_digest(path)
    except OSError:
        raise AdapterError(f"adapter {version}: {MANIFEST} cannot be read") from None
    if actual != expected:
        raise AdapterDigestError(f"adapter digest mismatch: adapter {version} has manifest sha256 {actual}, "
                                 f"adapter.manifestSha256 is {expected}")


def verify_adapter(path: Path, version: str, expected_digest: str | None = None) -> dict[str, Any]:
    """The manifest of the adapter at `path`, after its digest (when one was recorded) and every file's
    sha256 matched; else AdapterError."""
    if not path.is_dir():
        raise AdapterError(f"adapter {version} not found under adapter.dir")
    if expected_digest is not None:
        check_digest(path, version, expected_digest)
    try:
        manifest = verify_adapter_dir(path)
    except ArtifactError as error:
        raise AdapterError(f"adapter {version} failed verification: {error}") from None
    declared = manifest.get("adapterVersion")
    if declared and declared != version:
        raise AdapterError(f"adapter folder {version} declares adapterVersion {declared}")
    return manifest
