"""Steps of the gateway suite: the gateway as a process, a person with a suspended PersonalAI and their
token, calls as the app makes them, and namespaces deleted while the operator can still erase them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
from cluster_harness import REPO, OperatorProcess, free_port, get_json, personalai_manifest, secret_manifest

from devcluster.waiting import wait_for


def create_person(cluster, namespace: str, name: str, reflections: str) -> str:
    """A suspended PersonalAI on `reflections`; its token, once the operator has published it."""
    secret, key = f"{name}-reflections", "reflections.jsonl"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=secret_manifest(secret, key, reflections, name))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=personalai_manifest(name, secret, key, suspend=True))
    personalai = wait_for(lambda: (lambda p: p if ((p or {}).get("status") or {}).get("access")
                                   and (p.get("status") or {}).get("dataAssessment") else None)(
        get_json(cluster, "personalai", name, "-n", namespace)), timeout=60,
        message=f"{name}'s data assessment and token (status.access)")
    encoded = get_json(cluster, "secret", personalai["status"]["access"]["tokenSecret"], "-n", namespace)["data"]["token"]
    return base64.b64decode(encoded).decode()


def call(gateway, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path.endswith("stream=true"):  # read a stream only as far as its headers
        with httpx.stream(method, gateway.url + path, headers=headers, timeout=10, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
            return response
    return httpx.request(method, gateway.url + path, headers=headers, timeout=30, **kwargs)


class GatewayProcess(OperatorProcess):
    """`python -m personalai_gateway` with `settings` (PERSONALAI_GATEWAY_*, e.g. a chart Deployment's env)
    and `credentials` (KUBECONFIG, or a pod's service-account files); stopped and killed as the operator is."""

    def __init__(self, log_path: Path, credentials: Mapping[str, str], settings: Mapping[str, str]):
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Short heartbeats, so a test sees one; the port comes last (a chart's env names the pod's).
        self.env = {**os.environ, **credentials, "PERSONALAI_LISTEN_HOST": "127.0.0.1",
                    "PERSONALAI_GATEWAY_HEARTBEAT_SECONDS": "1", **settings, "PERSONALAI_GATEWAY_PORT": str(self.port)}
        self.process: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "personalai_gateway"], cwd=REPO, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.alive, timeout=60, message=f"the gateway's token index (log: {self.log_path})")
        return self

    def alive(self) -> bool:
        """Up, and its token index has its first list in."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the gateway exited: {self.log_text()[-2000:]}")
        return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200


def delete_namespaces(cluster, names: list[str]) -> None:
    """Delete and wait until gone, while the operator still runs: it lifts its PersonalAIs' finalizers
    (erasure), which nobody would lift once it has stopped.

    The namespace controller deletes pods first and the rest only once they are gone (Kubernetes 1.34's
    ordered namespace deletion). A kubelet would stop a deleted trainer pod and report it Failed, after
    which the Job controller lifts its job-tracking finalizer; kwok never stops it, so the wait plays
    that kubelet for pods that are being deleted, or the namespace would wait on them for ever."""
    cluster.kubectl("delete", "namespace", *names, "--wait=false", "--ignore-not-found", check=False)

    def gone() -> bool:
        for pod in (get_json(cluster, "pods", "-A") or {}).get("items", []):
            metadata = pod["metadata"]
            if metadata["namespace"] in names and metadata.get("deletionTimestamp") and metadata.get("finalizers"):
                where = (metadata["name"], "-n", metadata["namespace"])
                cluster.kubectl("patch", "pod", *where, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                                check=False)
        return not [name for name in names if cluster.kubectl("get", "namespace", name, check=False).returncode == 0]

    wait_for(gone, timeout=180, interval=1, message=f"namespaces {', '.join(names)} to be gone")
