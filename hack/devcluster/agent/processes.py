"""A container's process: started in its own session (so the whole tree can be signalled), output
appended to the container's log file, stopped with SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class ContainerProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL what is left of the group (children that outlived the main process too, as when a
        container's cgroup is torn down); return the main process's return code."""
        self._signal(signal.SIGKILL)
        try:
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL


def stop_processes(processes: list[ContainerProcess], grace_seconds: float) -> None:
    """SIGTERM every process, wait until all exit or the grace period ends, then SIGKILL."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + max(grace_seconds, 0.1)
    for process in processes:
        try:
            process.popen.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        process.kill()


def run_to_completion(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> int:
    """A short command (an exec probe): its exit code, or 1 on timeout (the group is killed)."""
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
        return 1
