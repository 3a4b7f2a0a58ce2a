"""Where a pod's volumes live on this host, and how they appear under the pod's root folder.

A pod run by the development node agent sees its volumes through PERSONALAI_PATH_PREFIX: the mount
path `/etc/personalai` is `<pod root>/etc/personalai`, a symlink to the volume's host folder (or to
a file or folder inside it for a subPath). `build_pod_layout` is pure; `apply_layout` makes the links.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import NamedTuple

# Volume kinds whose contents the agent writes from API objects; read-only in a pod, as in kubelet.
RENDERED_KINDS = ("configMap", "secret", "projected", "downwardAPI")
DIRECTORY_KINDS = ("emptyDir", "persistentVolumeClaim")


class VolumeError(Exception):
    """A volume the agent cannot provide; the message names the volume, never its contents."""


class Mount(NamedTuple):
    mount_path: str  # as the container sees it
    host_path: Path  # where it really is
    read_only: bool


def volume_kind(volume: dict) -> str:
    for kind in RENDERED_KINDS + DIRECTORY_KINDS:
        if kind in volume:
            return kind
    other = next((k for k in volume if k != "name"), "unknown")
    raise VolumeError(f"volume {volume.get('name')!r}: type {other!r} is not supported by the development node agent")


def volume_host_path(volume: dict, namespace: str, volumes_root: Path, claims_root: Path) -> Path:
    """The host folder of a volume: per pod, except a claim's, which is shared per namespace and claim."""
    if volume_kind(volume) == "persistentVolumeClaim":
        return claims_root / namespace / volume["persistentVolumeClaim"]["claimName"]
    return volumes_root / volume["name"]


def _clean_relative(path: str, what: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise VolumeError(f"{what} {path!r} must be a relative path without '..'")
    return relative


def build_pod_layout(pod: dict, volumes_root: Path, claims_root: Path | None = None) -> list[Mount]:
    """Every mount of every container (init containers first), one per mount path, outermost first.

    One pod root serves all its containers, so when two containers mount different things at the
    same path the first one wins.
    """
    claims_root = claims_root if claims_root is not None else volumes_root.parent / "claims"
    namespace = pod["metadata"]["namespace"]
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts: dict[str, Mount] = {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for mount in container.get("volumeMounts") or []:
            path = str(PurePosixPath(mount["mountPath"]))
            if not path.startswith("/") or ".." in PurePosixPath(path).parts:
                raise VolumeError(f"mountPath {mount['mountPath']!r} must be absolute without '..'")
            if path in mounts:
                continue
            volume = volumes.get(mount["name"])
            if volume is None:
                raise VolumeError(f"volumeMount {mount['name']!r} names no volume of the pod")
            if mount.get("subPathExpr"):
                raise VolumeError(f"volumeMount {mount['name']!r}: subPathExpr is not supported by the agent")
            host = volume_host_path(volume, namespace, volumes_root, claims_root)
            if mount.get("subPath"):
                host = host / _clean_relative(mount["subPath"], "subPath")
            read_only = bool(mount.get("readOnly")) or volume_kind(volume) in RENDERED_KINDS
            mounts[path] = Mount(path, host, read_only)
    return sorted(mounts.values(), key=lambda m: (len(PurePosixPath(m.mount_path).parts), m.mount_path))


def apply_layout(root: Path, mounts: list[Mount]) -> None:
    """Make each mount path under `root` a symlink to its host path (idempotent).

    Folders of emptyDir and claim volumes (and a missing subPath folder in them, as kubelet does)
    are created; rendered volumes must have been written before.
    """
    root.mkdir(parents=True, exist_ok=True)
    for mount in mounts:
        if not mount.host_path.exists():
            mount.host_path.mkdir(parents=True, exist_ok=True)
        link = root / mount.mount_path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            if Path(os.readlink(link)) == mount.host_path:
                continue
            link.unlink()
        elif link.exists():
            if link.resolve() == mount.host_path.resolve():
                continue  # already reached through an outer mount of the same volume
            if not link.is_dir() or any(link.iterdir()):
                # Inside another volume: kubelet would mount over it; removing it would lose that volume's data.
                raise VolumeError(f"mount path {mount.mount_path!r} already holds files of another volume")
            link.rmdir()
        link.symlink_to(mount.host_path)
