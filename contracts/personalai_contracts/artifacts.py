"""The adapter artifact's manifest: written by the trainer, verified by the server before loading.

A directory holds adapter_config.json, adapter_model.safetensors, the tokenizer files and
manifest.json {adapterVersion, baseModel, dataVersion, config, metrics, files: {name: sha256}}.
Standard library only, so the server can import it without torch:

    from personalai_contracts.artifacts import verify_adapter_dir
    manifest = verify_adapter_dir("/artifacts/v1-3f9a2c1b")   # raises ArtifactError on any mismatch
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
MANIFEST_KEYS = ("adapterVersion", "baseModel", "dataVersion", "config", "metrics", "files")


class ArtifactError(ValueError):
    """The adapter directory does not match its manifest (or has none)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_artifact_files(directory: Path) -> list[str]:
    """Every file under `directory` except the manifest, as sorted POSIX relative paths."""
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*")
                  if path.is_file() and path.name != MANIFEST)


def write_manifest(
    directory: str | os.PathLike[str], *, adapter_version: str, base_model: str, data_version: str,
    config: dict, metrics: dict,
) -> str:
    """Hash every file in `directory` into manifest.json; returns the manifest's own sha256."""
    directory = Path(directory)
    files = {name: sha256_file(directory / name) for name in list_artifact_files(directory)}
    manifest = {"adapterVersion": adapter_version, "baseModel": base_model, "dataVersion": data_version,
                "config": config, "metrics": metrics, "files": files}
    temporary = directory / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(directory / MANIFEST)  # atomic: a reader never sees half a manifest
    return manifest_digest(directory)


def manifest_digest(directory: str | os.PathLike[str]) -> str:
    """The adapter's digest: its manifest's sha256, which covers every file's (what the operator records)."""
    return sha256_file(Path(directory) / MANIFEST)


def verify_adapter_dir(path: str | os.PathLike[str]) -> dict:
    """The manifest, after checking every listed file's sha256 and that nothing is missing or extra."""
    directory = Path(path)
    if not directory.is_dir():
        raise ArtifactError(f"adapter directory {directory} does not exist")
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{manifest_path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{manifest_path} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} is not a JSON object")
    absent = [key for key in MANIFEST_KEYS if key not in manifest]
    if absent:
        raise ArtifactError(f"{manifest_path} lacks {', '.join(absent)}")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactError(f"{manifest_path}: 'files' must map file names to sha256")
    for name in REQUIRED_FILES:
        if name not in files:
            raise ArtifactError(f"{manifest_path} does not list {name}")
    for name, expected in sorted(files.items()):
        file_path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ArtifactError(f"{manifest_path} lists a path outside the directory: {name}")
        if not file_path.is_file():
            raise ArtifactError(f"{name} is listed in the manifest but missing from {directory}")
        actual = sha256_file(file_path)
        if actual != expected:
            raise ArtifactError(f"{name} has sha256 {actual}, the manifest says {expected}")
    extra = sorted(set(list_artifact_files(directory)) - set(files))
    if extra:
        raise ArtifactError(f"{directory} holds files the manifest does not list: {', '.join(extra)}")
    return manifest
