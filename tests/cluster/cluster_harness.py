"""The harness of the operator-driven cluster suites: a `Suite` (its share of the control plane), the
operator as a real subprocess, the CRDs, the suite's own simulated GPU nodes, and small readers
(kubectl in, plain dicts out). The fixtures built on it live in tests/cluster/conftest.py; a suite's
own conftest only says which `Suite` it is.

Isolation: several suites (and several sessions) share one control plane, so each suite owns a
namespace prefix and a GPU product label. Its operator watches only `<prefix>-*` namespaces and
counts only nodes with its own product label as RTX 5090 nodes, so occupying "every GPU" or every
model slot in one suite never blocks another suite's pods, and no other suite's pods land on its
nodes.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.nodes import GPU_PRODUCT_LABEL
from devcluster.waiting import wait_for
from personalai_operator.reflections_access import REFLECTIONS_FOR

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GROUP_VERSION = "personalai.dev/v1alpha1"
RESYNC_SECONDS = 2

# What every test operator runs with, before a suite's own settings. Small trainer requests: kwok runs
# no trainer. Shared GPU mode: a promoted adapter's chat server asks for a model slot, not a whole
# GPU, so it never takes the GPU a next training run is waiting for.
OPERATOR_DEFAULTS = {
    "PERSONALAI_RESYNC_SECONDS": str(RESYNC_SECONDS),
    "PERSONALAI_TRAINER_CPU": "1",
    "PERSONALAI_TRAINER_MEMORY": "1Gi",
    "PERSONALAI_TRAINER_IMAGE": "personalai-trainer:test",
    "PERSONALAI_SERVING_GPU_SHARING": "shared",
}


@dataclass(frozen=True)
class Suite:
    """One suite's share of the control plane (see the module docstring)."""

    prefix: str  # its namespaces are `<prefix>-*`, and its operator watches only those
    gpu_product: str  # the GPU product label of its own simulated RTX 5090 nodes (one GPU each)
    nodes: tuple[str, ...]
    settings: Mapping[str, str] = field(default_factory=dict)  # PERSONALAI_* beyond OPERATOR_DEFAULTS

    def operator_settings(self) -> dict[str, str]:
        # The isolation settings come last: no suite setting may widen what its operator sees.
        return {**OPERATOR_DEFAULTS, **self.settings,
                "PERSONALAI_NAMESPACES": f"{self.prefix}-*", "PERSONALAI_GPU_PRODUCT": self.gpu_product}

    def namespace_name(self, test_name: str) -> str:
        """A fresh name the suite's operator watches, readable as the test it belongs to."""
        stem = re.sub(r"[^a-z0-9-]", "-", test_name.lower().removeprefix("test_"))[:30].strip("-")
        return f"{self.prefix}-{stem}-{uuid.uuid4().hex[:5]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`python -m personalai_operator` as a real subprocess with the given PERSONALAI_* settings and
    kubeconfig; restartable, kill -9 included."""

    def __init__(self, log_path: Path, kubeconfig: Path, settings: Mapping[str, str]):
        self.log_path = log_path
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        # The ports come last: settings copied from a chart's Deployment name the pod's ports.
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), **settings,
                    "PERSONALAI_METRICS_PORT": str(self.metrics_port),
                    "PERSONALAI_LIVENESS_PORT": str(self.liveness_port)}
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "personalai_operator"], cwd=REPO, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.alive, timeout=60, message=f"operator liveness endpoint (log: {self.log_path})")
        return self

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

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def install_crds(cluster) -> None:
    """Apply crds/ and wait until the API serves them. Every suite installs them this way: kubectl
    apply is idempotent, so suites (and sessions) on one control plane may do it in any order."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s",
                    "crd/personalais.personalai.dev", "crd/trainingruns.personalai.dev")
    wait_for(lambda: cluster.kubectl("get", "trainingruns", "-A", check=False).returncode == 0, timeout=30,
             message="the TrainingRun API to be served")


def ensure_nodes(cluster, suite: Suite) -> None:
    """The suite's nodes exist (another suite or session may have removed them), and no pod an earlier
    test left behind still counts against their GPUs. Left in place afterwards: another session
    running the same suite may still use them, and no other suite's pods land there."""
    present = set(cluster.kubectl("get", "nodes", "-o", "name").stdout.split())
    for name in suite.nodes:
        if f"node/{name}" not in present:
            cluster.add_gpu_node(name, gpus=1, labels={GPU_PRODUCT_LABEL: suite.gpu_product})
    remove_leftover_pods(cluster, suite)


def remove_leftover_pods(cluster, suite: Suite) -> None:
    """Remove the pods on the suite's nodes that belong to no live test: Terminating ones, and those
    of a namespace being deleted (tests delete theirs without waiting, so the next test may start
    while the namespace controller still works through it, and its pods still hold their GPUs)."""
    live = {ns["metadata"]["name"] for ns in (get_json(cluster, "namespaces") or {}).get("items", [])
            if (ns.get("status") or {}).get("phase") != "Terminating"}
    for pod in _pods_on(cluster, suite):
        if pod["metadata"].get("deletionTimestamp") or pod["metadata"]["namespace"] not in live:
            where = (pod["metadata"]["name"], "-n", pod["metadata"]["namespace"])
            # A Job's pod keeps its job-tracking finalizer when its Job vanished with the node.
            cluster.kubectl("patch", "pod", *where, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)
            cluster.kubectl("delete", "pod", *where, "--force", "--grace-period=0", check=False)


def _pods_on(cluster, suite: Suite) -> list[dict]:
    return [pod for pod in (get_json(cluster, "pods", "-A") or {}).get("items", [])
            if pod["spec"].get("nodeName") in suite.nodes]


def describe_nodes(cluster, suite: Suite) -> str:
    """What runs on the suite's nodes, for a failure message: namespace/name phase (Terminating)."""
    return "; ".join(f"{pod['metadata']['namespace']}/{pod['metadata']['name']} on {pod['spec']['nodeName']} "
                     f"{(pod.get('status') or {}).get('phase')}"
                     + (" Terminating" if pod["metadata"].get("deletionTimestamp") else "")
                     for pod in _pods_on(cluster, suite)) or "nothing"


# ---- reading the cluster ------------------------------------------------------------------------

def get_json(cluster, *args: str):
    """`kubectl get ... -o json` as a dict; None when it fails (the object does not exist)."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def items(cluster, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
    args = [kind, "-n", namespace] + (["-l", selector] if selector else [])
    return (get_json(cluster, *args) or {}).get("items", [])


def condition(obj: dict | None, type_: str) -> dict:
    """The status condition `type_` of `obj`. Missing (no object, no status, no such condition) is {}:
    `.get("status")` then reads None, and `["status"]` fails the test with a KeyError."""
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == type_:
            return entry
    return {}


# ---- manifests ----------------------------------------------------------------------------------

def personalai_manifest(name: str, secret: str, key: str, **spec) -> str:
    body = {"apiVersion": GROUP_VERSION, "kind": "PersonalAI", "metadata": {"name": name},
            "spec": {"displayName": name.title(), "reflections": {"secretRef": {"name": secret, "key": key}},
                     "training": {"epochs": 1}, **spec}}
    return json.dumps(body)


def secret_manifest(name: str, key: str, text: str, for_personalai: str | None) -> str:
    """A reflections Secret; `for_personalai` is the PersonalAI its owner allows to train on it (None: none)."""
    annotations = {REFLECTIONS_FOR: for_personalai} if for_personalai else {}
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "annotations": annotations},
                       "stringData": {key: text}})


def take_every_gpu(cluster, suite: Suite, namespace: str) -> None:
    """One pod holding one GPU on each of the suite's nodes (not owned by a Job, so kwok keeps it Running)."""
    for i in range(len(suite.nodes)):
        hog = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"hog-{i}"}, "spec": {
            "containers": [{"name": "hog", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {GPU_PRODUCT_LABEL: suite.gpu_product}}}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hog))

    def all_placed() -> bool:
        remove_leftover_pods(cluster, suite)  # an earlier test's namespace may only now be Terminating
        return len([p for p in items(cluster, "pods", namespace) if p["spec"].get("nodeName")]) == len(suite.nodes)

    try:
        wait_for(all_placed, timeout=120, message="every GPU taken")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; on the suite's nodes: {describe_nodes(cluster, suite)}") from error
