"""Shared pieces of the serving cluster tests: this suite's own GPU node and namespaces, the operator
as a subprocess, and the steps that take a PersonalAI from reflections to a promoted adapter.

Isolation from other suites on the same control plane: the operator here watches only namespaces
named `srv-*` and treats only nodes labelled with this suite's own GPU product as RTX 5090 nodes,
so its model-slot arithmetic counts nothing but its own pods (and no other suite's pods land here).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from devcluster.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
GROUP_VERSION = "personalai.dev/v1alpha1"
PRODUCT_LABEL = "nvidia.com/gpu.product"
NODE_PRODUCT = "NVIDIA-GeForce-RTX-5090-SRVTEST"
NODE = "srv-rtx5090-0"
EXTRA_NODE = "srv-rtx5090-extra"
NAMESPACE_PATTERN = "srv-*"
MODEL_SLOT = "personalai.dev/model-slot"
RESYNC_SECONDS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorSubprocess:
    """`python -m personalai_operator` with the given PERSONALAI_* settings and kubeconfig."""

    def __init__(self, log_path: Path, kubeconfig: Path, settings: dict[str, str]):
        self.log_path = log_path
        self.liveness_port = free_port()
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), **settings,
                    "PERSONALAI_LIVENESS_PORT": str(self.liveness_port),
                    "PERSONALAI_METRICS_PORT": str(free_port())}
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorSubprocess:
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

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


# ---- reading the cluster ------------------------------------------------------------------------

def get_json(cluster, *args: str):
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def items(cluster, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
    args = [kind, "-n", namespace] + (["-l", selector] if selector else [])
    return (get_json(cluster, *args) or {}).get("items", [])


def condition(obj: dict | None, type_: str) -> dict:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == type_:
            return entry
    return {}


def personalai(cluster, namespace: str, name: str) -> dict | None:
    return get_json(cluster, "personalais", name, "-n", namespace)


def server_config(cluster, namespace: str, name: str) -> dict | None:
    config_map = get_json(cluster, "configmap", f"{name}-chat-config", "-n", namespace)
    return json.loads(config_map["data"]["server.json"]) if config_map else None


def server_pods(cluster, namespace: str, name: str) -> list[dict]:
    pods = items(cluster, "pods", namespace, f"personalai.dev/component=server,personalai.dev/personalai={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def slot_pods_on(cluster, node: str) -> list[dict]:
    """Live pods on `node` that hold a model slot, in any namespace."""
    pods = (get_json(cluster, "pods", "-A", "--field-selector", f"spec.nodeName={node}") or {}).get("items", [])
    return [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
            and any(MODEL_SLOT in ((c.get("resources") or {}).get("requests") or {}) for c in p["spec"]["containers"])]


def ensure_node(cluster, name: str = NODE) -> None:
    if cluster.kubectl("get", "node", name, check=False).returncode != 0:
        cluster.add_gpu_node(name, gpus=1, labels={PRODUCT_LABEL: NODE_PRODUCT})


def drain_leftovers(cluster, node: str = NODE) -> None:
    """Slot-holding pods of earlier tests (their namespaces are deleted asynchronously) leave the node.
    Only pods of namespaces already being deleted are hurried along; anything else is waited for."""
    for pod in slot_pods_on(cluster, node):
        namespace = get_json(cluster, "namespace", pod["metadata"]["namespace"]) or {}
        if namespace.get("status", {}).get("phase") != "Terminating":
            continue
        where = (pod["metadata"]["name"], "-n", pod["metadata"]["namespace"])
        cluster.kubectl("delete", "pod", *where, "--force", "--grace-period=0", "--wait=false", check=False)
    wait_for(lambda: not slot_pods_on(cluster, node), timeout=60, message=f"no model slots in use on {node}")


# ---- making a PersonalAI and its adapters -------------------------------------------------------

def reflections_jsonl(count: int = 21, categories: int = 3, words: int = 55) -> str:
    """Just above the minimum readiness level (20 responses, 30+ average words, 3 categories, 1,000 words)."""
    topics = ["family", "work", "values", "travel"][:categories]
    lines = []
    for i in range(count):
        answer = " ".join(f"thought{i}-{j}" for j in range(words))
        lines.append(json.dumps({"question": f"Question number {i}?", "category": topics[i % categories],
                                 "answer": answer}))
    return "\n".join(lines) + "\n"


def create_personalai(cluster, namespace: str, name: str, **spec) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-reflections"},
              "stringData": {"reflections.jsonl": reflections_jsonl()}}
    body = {"apiVersion": GROUP_VERSION, "kind": "PersonalAI", "metadata": {"name": name},
            "spec": {"displayName": name.title(),
                     "reflections": {"secretRef": {"name": f"{name}-reflections", "key": "reflections.jsonl"}},
                     "training": {"epochs": 1}, **spec}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def finish_run(cluster, namespace: str, personalai_name: str, passed: bool = True,
               known: tuple[str, ...] = (), timeout: float = 90) -> dict:
    """Wait for the PersonalAI's newest run (not in `known`) to complete its Job, and report what its
    trainer would: the artifact and the validation verdict. Returns the run."""
    def new_run():
        runs = [r for r in items(cluster, "trainingruns", namespace, f"personalai.dev/personalai={personalai_name}")
                if r["metadata"]["name"] not in known]
        return runs[0] if runs else None

    run = wait_for(new_run, timeout=60, message=f"a new TrainingRun for {personalai_name}")
    name, version = run["metadata"]["name"], run["spec"]["adapterVersion"]
    metrics = {"evalLoss": 0.8, "perplexity": 2.2 if passed else 4.6, "coherence": 0.9,
               "personalityConsistency": 0.93, "passed": passed,
               "reasons": [] if passed else ["perplexity 4.60 is above the maximum 3.00"]}
    patch = {"status": {"artifact": {"location": f"/artifacts/{version}", "manifestSha256": "0" * 64,
                                     "adapterVersion": version},
                        "validation": metrics}}
    cluster.kubectl("patch", "trainingruns", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps(patch))
    return wait_for(lambda: (lambda r: r if (r.get("status") or {}).get("phase") == "Succeeded" else None)(
        get_json(cluster, "trainingruns", name, "-n", namespace) or {}), timeout=timeout,
        message=f"TrainingRun {name} to succeed")


def wait_serving(cluster, namespace: str, name: str, timeout: float = 150) -> dict:
    return wait_for(lambda: (lambda p: p if condition(p, "Serving").get("status") == "True" else None)(
        personalai(cluster, namespace, name)), timeout=timeout, message=f"{name} Serving=True")
