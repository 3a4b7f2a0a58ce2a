"""The images tier's helpers: a container run as its pod runs it (uid 10001, read-only root, no
capabilities, only the mounts its pod spec gives it), and host folders that user may write."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from devcluster import images

USER = "10001:10001"


def owned_dir(path: Path) -> Path:
    """A host folder the container's user owns, with all it holds (a volume the pod's user wrote)."""
    path.mkdir(parents=True, exist_ok=True)
    for item in (path, *path.rglob("*")):
        shutil.chown(item, 10001, 10001)
    return path


class Container:
    """One `podman run` with the restricted pod's security settings; stopped and removed at the end."""

    def __init__(self, tag: str, args: Sequence[str] = (), mounts: dict[Path, str] | None = None,
                 writable: dict[Path, str] | None = None, env: dict[str, str] | None = None):
        self.name = f"personalai-images-{uuid.uuid4().hex[:8]}"
        volumes = [f"{host}:{inside}:ro" for host, inside in (mounts or {}).items()]
        volumes += [f"{host}:{inside}:rw" for host, inside in (writable or {}).items()]
        self.options = ["--name", self.name, "--user", USER, "--read-only",
                        "--cap-drop=ALL", "--security-opt=no-new-privileges", "--network=host", *images.ULIMITS,
                        "--tmpfs", "/tmp:rw,size=512m", *(arg for v in volumes for arg in ("--volume", v)),
                        *(arg for k, v in (env or {}).items() for arg in ("--env", f"{k}={v}")), tag, *args]

    def run(self, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*images.PODMAN, "run", "--rm", *self.options], capture_output=True, text=True,
                                  timeout=timeout)
        finally:
            self.remove()

    def start(self, log_path: Path) -> Container:
        self.log = log_path.open("w")
        self.process = subprocess.Popen([*images.PODMAN, "run", *self.options], stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def running(self) -> bool:
        return self.process.poll() is None

    def remove(self) -> None:
        subprocess.run([*images.PODMAN, "rm", "--force", "--time", "10", self.name], capture_output=True,
                       timeout=60, check=False)
        if getattr(self, "process", None):
            self.process.wait(timeout=30)
            self.log.close()
