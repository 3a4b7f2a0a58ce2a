"""The development node agent: registers a node that looks like an RTX 5090 node and runs the pods
bound to it as local processes. It stands in for kubelet and a container runtime during
development only (no isolation, no images: see images.py for what it can run).

    python -m devcluster agent --node dev-rtx5090-0       # state in .work/cluster/agent/<node>
    python -m devcluster up --agent-nodes 1                # the same, started with the control plane

Threads: the pod watch (list, then watch with a timeout, re-list on errors), the heartbeat (Lease
and the node's Ready condition), housekeeping (claim folders of deleted PVCs), and one worker per pod.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import signal
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client.rest import ApiException

from ..nodes import build_node
from .addresses import AddressPool
from .agentlog import log
from .kubeapi import KubeApi, describe
from .podstatus import now_rfc3339
from .podworker import PodWorker

DEFAULT_NODE = "dev-rtx5090-0"
HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40
WATCH_SECONDS = 30
HOUSEKEEPING_SECONDS = 5


@dataclass
class AgentSettings:
    node: str
    state_dir: Path
    kubeconfig: Path
    gpus: int = 1


def build_registration(name: str, gpus: int) -> dict:
    """The Node this agent registers: an RTX 5090 node (labels, GPU capacity, taint), not kwok's."""
    node = build_node(name, gpus=gpus, simulated=False)
    node["metadata"]["annotations"]["personalai.dev/dev-node-agent"] = "runs pods as local processes; development only"
    node["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}]
    node["status"]["nodeInfo"] |= {
        "kubeletVersion": "personalai-dev-node-agent", "kubeProxyVersion": "none",
        "containerRuntimeVersion": "devagent://local-processes", "kernelVersion": platform.release(),
        "osImage": "local processes (development node agent)", "machineID": name, "systemUUID": name, "bootID": name}
    return node


def build_node_conditions(since: str, now: str) -> list[dict]:
    """Ready and the pressure conditions, as a kubelet heartbeat posts them."""
    def condition(kind: str, status: str, reason: str, message: str) -> dict:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since}

    return [condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "development node agent"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "development node agent"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "development node agent"),
            condition("Ready", "True", "KubeletReady",
                      "development node agent is posting ready status (stands in for kubelet; development only)")]


class NodeAgent:
    def __init__(self, settings: AgentSettings, api: KubeApi | None = None) -> None:
        self.settings = settings
        self.node_name = settings.node
        self.state_dir = settings.state_dir
        self.claims_root = self.state_dir / "claims"
        self.api = api or KubeApi(str(settings.kubeconfig))
        self.apiserver_port = urllib.parse.urlsplit(self.api.host).port or 443
        self.path_env = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        # Each control plane's agents draw from their own /24, so a demo and a test cluster can run side by side.
        self.addresses = AddressPool(prefix=os.environ.get("PERSONALAI_POD_ADDRESS_PREFIX", "127.0.0"))
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready_since = now_rfc3339()
        self.node: dict = {}

    # -- node ----------------------------------------------------------------------------------
    def register(self) -> None:
        node = self.api.read_node(self.node_name)
        if node is None:
            node = self.api.create_node(build_registration(self.node_name, self.settings.gpus))
            log("node.registered", node=self.node_name, gpus=self.settings.gpus)
        else:
            log("node.found", node=self.node_name)  # capacity is left alone: the operator patches it
        self.node = node
        self.heartbeat()

    def _try_register(self) -> bool:
        try:
            self.register()
            return True
        except Exception as error:  # noqa: BLE001 - the API may still be starting
            log("node.register_failed", "warning", node=self.node_name, error=describe(error))
            return False

    def heartbeat(self) -> None:
        self.api.renew_lease(self.node, LEASE_SECONDS)
        self.api.patch_node_status(self.node_name, {"status": {
            "conditions": build_node_conditions(self.ready_since, now_rfc3339())}})

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except ApiException as error:
                log("node.heartbeat_failed", "warning", node=self.node_name, error=describe(error))
                if error.status == 404:
                    self._try(self.register)
            except Exception as error:  # noqa: BLE001 - the API may be restarting: try again next beat
                log("node.heartbeat_failed", "warning", node=self.node_name, error=type(error).__name__)

    def _try(self, call) -> None:
        try:
            call()
        except Exception as error:  # noqa: BLE001
            log("agent.call_failed", "warning", error=describe(error))

    # -- pods ----------------------------------------------------------------------------------
    def on_pod(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None:
                if self.stop.is_set():
                    return
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.start()
                return
        worker.update(pod)

    def on_pod_gone(self, uid: str) -> None:
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None:
            worker.vanish()

    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def _watch_loop(self) -> None:
        while not self.stop.is_set():
            try:
                pods, version = self.api.list_pods(self.node_name)
                listed = {p["metadata"]["uid"] for p in pods}
                for pod in pods:
                    self.on_pod(pod)
                with self.lock:
                    missing = [uid for uid in self.workers if uid not in listed]
                for uid in missing:
                    self.on_pod_gone(uid)
                while not self.stop.is_set():
                    for kind, pod in self.api.watch_pods(self.node_name, version, WATCH_SECONDS):
                        version = pod["metadata"].get("resourceVersion", version)
                        if kind == "DELETED":
                            self.on_pod_gone(pod["metadata"]["uid"])
                        else:
                            self.on_pod(pod)
            except ApiException as error:
                if error.status != 410:  # 410 Gone: our version is too old, re-list at once
                    log("pods.watch_failed", "warning", node=self.node_name, error=describe(error))
                    self.stop.wait(2)
            except Exception as error:  # noqa: BLE001 - connection trouble: re-list after a pause
                log("pods.watch_failed", "warning", node=self.node_name, error=type(error).__name__)
                self.stop.wait(2)

    # -- housekeeping --------------------------------------------------------------------------
    def remove_deleted_claims(self) -> None:
        """Remove the folder of each claim that no longer exists and no pod here mounts."""
        with self.lock:
            workers = list(self.workers.values())
        in_use = {(w.namespace, v["persistentVolumeClaim"]["claimName"]) for w in workers
                  for v in w.pod["spec"].get("volumes") or [] if "persistentVolumeClaim" in v}
        if not self.claims_root.is_dir():
            return
        for namespace_dir in self.claims_root.iterdir():
            for claim_dir in namespace_dir.iterdir():
                key = (namespace_dir.name, claim_dir.name)
                if key not in in_use and not self.api.claim_exists(*key):
                    shutil.rmtree(claim_dir, ignore_errors=True)
                    log("claim.removed", namespace=key[0], claim=key[1])
            if not any(namespace_dir.iterdir()):
                namespace_dir.rmdir()

    def _housekeeping_loop(self) -> None:
        while not self.stop.wait(HOUSEKEEPING_SECONDS):
            try:
                self.remove_deleted_claims()
            except Exception as error:  # noqa: BLE001
                log("housekeeping.failed", "warning", error=describe(error))

    # -- running -------------------------------------------------------------------------------
    def run(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock_file = (self.state_dir / "agent.lock").open("w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("agent.already_running", "error", node=self.node_name, state_dir=self.state_dir)
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())
        log("agent.starting", node=self.node_name, state_dir=self.state_dir, api=self.api.host,
            note="development only: stands in for kubelet and a container runtime")
        while not self._try_register():  # the API may still be starting
            if self.stop.wait(2):
                return 0
        for target in (self._watch_loop, self._heartbeat_loop, self._housekeeping_loop):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        self.stop.wait()
        self.shut_down()
        return 0

    def shut_down(self) -> None:
        """Stop every pod's processes (their objects stay; a restarted agent takes them up again)."""
        log("agent.stopping", node=self.node_name, pods=len(self.workers))
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shut_down()
        for worker in workers:
            worker.join(timeout=15)
        log("agent.stopped", node=self.node_name)


def run_agent(node: str, state_dir: Path, kubeconfig: Path, gpus: int = 1) -> int:
    return NodeAgent(AgentSettings(node=node, state_dir=state_dir, kubeconfig=kubeconfig, gpus=gpus)).run()
