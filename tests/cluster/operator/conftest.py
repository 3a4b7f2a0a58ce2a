"""Fixtures for the operator's cluster tests: the CRDs, two private simulated RTX 5090 nodes, and one
operator process (python -m personalai_operator) shared by every test in the session.

Isolation from other suites running on the same control plane: the operator watches only namespaces
named `opt-*`, and its GPU product setting matches only this suite's own nodes, so occupying "every
GPU" here never blocks another suite's pods (nor theirs ours).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from operator_cluster_helpers import NAMESPACE_PATTERN, NODE_PRODUCT, NODES, REPO, RESYNC_SECONDS

from devcluster.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`python -m personalai_operator` as a real subprocess, restartable (kill -9 included)."""

    def __init__(self, log_path: Path, kubeconfig: Path):
        self.log_path = log_path
        self.metrics_port = _free_port()
        self.liveness_port = _free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PERSONALAI_NAMESPACES": NAMESPACE_PATTERN,
            "PERSONALAI_GPU_PRODUCT": NODE_PRODUCT,
            "PERSONALAI_RESYNC_SECONDS": str(RESYNC_SECONDS),
            "PERSONALAI_METRICS_PORT": str(self.metrics_port),
            "PERSONALAI_LIVENESS_PORT": str(self.liveness_port),
            "PERSONALAI_TRAINER_CPU": "1",
            "PERSONALAI_TRAINER_MEMORY": "1Gi",
            "PERSONALAI_TRAINER_IMAGE": "personalai-trainer:test",
            # A promoted adapter rolls out a chat server; here it must not take a GPU the next run
            # is waiting for (the serving suite tests time-slicing and slots).
            "PERSONALAI_SERVING_GPU_SHARING": "shared",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "personalai_operator"], cwd=REPO, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.alive, timeout=60, message=f"operator liveness endpoint (log: {self.log_path})")

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill(self) -> None:
        """SIGKILL: no chance to finish what it was doing."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, kill: bool = True) -> None:
        self.kill() if kill else self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def operator_crds(cluster):
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s",
                    "crd/personalais.personalai.dev", "crd/trainingruns.personalai.dev")
    wait_for(lambda: cluster.kubectl("get", "trainingruns", "-A", check=False).returncode == 0, timeout=30,
             message="the TrainingRun API to be served")
    return cluster


def _ensure_nodes(cluster) -> None:
    present = set(cluster.kubectl("get", "nodes", "-o", "name").stdout.split())
    for name in NODES:
        if f"node/{name}" not in present:
            cluster.add_gpu_node(name, gpus=1, labels={"nvidia.com/gpu.product": NODE_PRODUCT})
    # Pods left Terminating on these nodes by an earlier session still count against their GPUs.
    pods = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    for pod in pods:
        if pod["spec"].get("nodeName") in NODES and pod["metadata"].get("deletionTimestamp"):
            where = (pod["metadata"]["name"], "-n", pod["metadata"]["namespace"])
            # A Job's pod keeps its job-tracking finalizer when its Job vanished with the node.
            cluster.kubectl("patch", "pod", *where, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)
            cluster.kubectl("delete", "pod", *where, "--force", "--grace-period=0", check=False)


@pytest.fixture(scope="session")
def gpu_nodes(cluster):
    _ensure_nodes(cluster)
    # Left in place at the end: another session running this suite on the same plane may still use
    # them, and no other suite's pods can land there (their product label matches nothing else).
    return NODES


# Per module: an operator left running after its tests would keep the API server busy for the rest.
@pytest.fixture(scope="module")
def operator(operator_crds, gpu_nodes, cluster, tmp_path_factory):
    process = OperatorProcess(tmp_path_factory.mktemp("operator") / "operator.log", cluster.kubeconfig)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def ns(cluster, gpu_nodes, request):
    """A fresh namespace the operator watches (named opt-*), deleted after the test."""
    _ensure_nodes(cluster)  # another suite on the shared control plane may have removed extra nodes
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:30].strip("-")
    name = f"opt-{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
