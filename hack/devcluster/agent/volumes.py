"""The files of configMap, secret, downwardAPI and projected volumes, and keeping them in sync.

`render_volume_files` is pure (API objects come through lookup callables); `write_volume_files`
brings a folder to exactly those files, replacing each changed file atomically so a program never
reads half a file, like kubelet's atomic writer. Files are written read-only (mode without write
bits) because these volumes are read-only in a pod.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .environment import ContainerConfigError, field_value, resource_value
from .layout import VolumeError

Lookup = Callable[[str, str], "dict | None"]
TokenSource = Callable[[str | None, int], str]  # (audience, expirationSeconds) -> token
DEFAULT_MODE = 0o644
Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _object_files(kind: str, obj: dict | None, source: dict, default_mode: int) -> Files:
    name = source.get("name") or source.get("secretName")
    if obj is None:
        if source.get("optional", False):
            return {}
        raise VolumeError(f"{kind} {name!r} not found")
    if kind == "secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional", False):
                continue
            raise VolumeError(f"key {item['key']!r} not found in {kind} {name!r}")
        files[_relative(item["path"])] = (data[item["key"]], item.get("mode", default_mode))
    return files


def _relative(path: str) -> str:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise VolumeError(f"item path {path!r} must be a relative path without '..'")
    return str(relative)


def _downward_files(pod: dict, items: list[dict], pod_ip: str, default_mode: int) -> Files:
    containers = {c["name"]: c for c in pod["spec"].get("containers") or []}
    files: Files = {}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"], pod_ip)
            else:
                ref = item["resourceFieldRef"]
                value = resource_value(containers.get(ref.get("containerName"), {}), ref["resource"])
        except ContainerConfigError as error:
            raise VolumeError(str(error)) from None
        files[_relative(item["path"])] = (value.encode(), item.get("mode", default_mode))
    return files


def render_volume_files(pod: dict, volume: dict, *, pod_ip: str, get_config_map: Lookup, get_secret: Lookup,
                        request_token: TokenSource) -> Files:
    """The files a rendered volume holds now."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        source = volume["configMap"]
        return _object_files("configMap", get_config_map(namespace, source["name"]), source,
                             source.get("defaultMode", DEFAULT_MODE))
    if "secret" in volume:
        source = volume["secret"]
        return _object_files("secret", get_secret(namespace, source["secretName"]), source,
                             source.get("defaultMode", DEFAULT_MODE))
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward_files(pod, source.get("items") or [], pod_ip, source.get("defaultMode", DEFAULT_MODE))
    if "projected" in volume:
        projected = volume["projected"]
        mode = projected.get("defaultMode", DEFAULT_MODE)
        files: Files = {}
        for source in projected.get("sources") or []:
            if "configMap" in source:
                ref = source["configMap"]
                files |= _object_files("configMap", get_config_map(namespace, ref["name"]), ref, mode)
            elif "secret" in source:
                ref = source["secret"]
                files |= _object_files("secret", get_secret(namespace, ref["name"]), ref, mode)
            elif "downwardAPI" in source:
                files |= _downward_files(pod, source["downwardAPI"].get("items") or [], pod_ip, mode)
            elif "serviceAccountToken" in source:
                ref = source["serviceAccountToken"]
                token = request_token(ref.get("audience"), int(ref.get("expirationSeconds", 3600)))
                files[_relative(ref["path"])] = (token.encode(), mode)
            else:
                kind = next(iter(source), "unknown")
                raise VolumeError(f"volume {volume['name']!r}: projected source {kind!r} is not supported")
        return files
    raise VolumeError(f"volume {volume['name']!r} is not a rendered volume")


def write_volume_files(folder: Path, files: Files) -> bool:
    """Make `folder` hold exactly `files`; return whether anything changed."""
    folder.mkdir(parents=True, exist_ok=True)
    changed = False
    for relative, (content, mode) in files.items():
        target = folder / relative
        read_only_mode = mode & 0o555
        if target.is_file() and not target.is_symlink():
            if target.read_bytes() == content and (target.stat().st_mode & 0o777) == read_only_mode:
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        os.chmod(temporary, read_only_mode)
        os.replace(temporary, target)
        changed = True
    wanted = {folder / relative for relative in files}
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(w.is_relative_to(path) for w in wanted):
                shutil.rmtree(path, ignore_errors=True)
                changed = True
        elif path not in wanted:
            path.unlink(missing_ok=True)
            changed = True
    return changed
