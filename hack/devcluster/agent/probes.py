"""Readiness and liveness probes, run by the agent against the pod's loopback address.

httpGet (status 200-399 is success), tcpSocket (a connection is success) and exec (exit 0, run like
the container itself). `ProbeTracker` applies initialDelaySeconds, periodSeconds, successThreshold
and failureThreshold the way kubelet does.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def resolve_port(port: int | str, container: dict) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a port of container {container.get('name')!r}")


def run_probe(probe: dict, container: dict, pod_ip: str, run_exec: Callable[[list[str], float], int]) -> bool:
    """One probe attempt; True on success. Errors of the program probed count as failure."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            http = probe["httpGet"]
            host = http.get("host") or pod_ip
            scheme = http.get("scheme", "HTTP").lower()
            url = f"{scheme}://{host}:{resolve_port(http['port'], container)}{http.get('path', '/')}"
            request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in http.get("httpHeaders") or []})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return 200 <= response.status < 400
            except urllib.error.HTTPError as error:
                return 200 <= error.code < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            with socket.create_connection((tcp.get("host") or pod_ip, resolve_port(tcp["port"], container)), timeout):
                return True
        if "exec" in probe:
            return run_exec(list(probe["exec"].get("command") or []), timeout) == 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    return False  # a probe kind the agent does not know (grpc) never succeeds: say so in the spec instead


class ProbeTracker:
    """The running result of one probe of one container run."""

    def __init__(self, probe: dict, initial: bool) -> None:
        self.probe = probe
        self.result = initial
        self._successes = self._failures = 0
        self._next = time.monotonic() + float(probe.get("initialDelaySeconds", 0))

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def record(self, ok: bool) -> bool:
        """Count one attempt; return the (possibly changed) result."""
        self._next = time.monotonic() + float(self.probe.get("periodSeconds", 10))
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if self._successes >= int(self.probe.get("successThreshold", 1)):
                self.result = True
        else:
            self._failures, self._successes = self._failures + 1, 0
            if self._failures >= int(self.probe.get("failureThreshold", 3)):
                self.result = False
        return self.result
