"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok for simulated nodes. Started and stopped by `python -m devcluster up|down`.

Every component runs as its own process in its own session, so the plane outlives the command
that started it; pids, logs, certificates and the admin kubeconfig live in the state folder
(default `.work/cluster` in the repo). `up` is idempotent: a healthy plane is reused.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import binaries, nodes, pki
from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


def default_state_dir() -> Path:
    return Path(os.environ.get("PERSONALAI_CLUSTER_DIR", REPO_ROOT / ".work" / "cluster"))


def log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def build_kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict:
    """A kubeconfig with the certificates inlined, so it works from any folder."""
    import base64

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "personalai-dev",
        "clusters": [{"name": "personalai-dev", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "personalai-dev", "context": {"cluster": "personalai-dev", "user": user}}],
    }


@dataclass
class ControlPlane:
    state_dir: Path = field(default_factory=default_state_dir)
    apiserver_port: int = int(os.environ.get("PERSONALAI_APISERVER_PORT", "16443"))
    etcd_port: int = int(os.environ.get("PERSONALAI_ETCD_PORT", "23790"))
    # Loopback /24 the node agents give pod addresses from (127.0.0.0/8 all reaches `lo`).
    pod_address_prefix: str = os.environ.get("PERSONALAI_POD_ADDRESS_PREFIX", "127.0.0")

    # -- paths ---------------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.state_dir / "pki")

    @property
    def bin_dir(self) -> Path:
        return binaries.bin_dir()

    def _pid_file(self, component: str) -> Path:
        return self.state_dir / "run" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    # -- health --------------------------------------------------------------------------------
    def _running(self, component: str) -> bool:
        try:
            pid = int(self._pid_file(component).read_text())
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def healthy(self) -> bool:
        if not all(self._running(c) for c in COMPONENTS) or not self.pki.exists():
            return False
        try:
            return self._get("/readyz") == "ok"
        except Exception:  # noqa: BLE001 - anything but "ok" means not healthy
            return False

    def _get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(self.pki.client_cert("admin"), self.pki.client_key("admin"))
        with urllib.request.urlopen(self.server + path, context=context, timeout=5) as response:
            return response.read().decode()

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, gpu_nodes: int = 2, cpu_nodes: int = 1, timeout: float = 180) -> ControlPlane:
        """Start the plane (or reuse a healthy one) with the default simulated nodes."""
        if self.healthy():
            log(f"control plane already up: {self.server} (kubeconfig {self.kubeconfig})")
            return self
        self.down(quiet=True)
        binaries.build()
        started = time.monotonic()
        for sub in ("run", "logs", "etcd"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        log("generating certificates")
        pki.generate(self.pki.root)
        self._write_kubeconfigs()
        self._start("etcd", self._etcd_args())
        wait_for(lambda: self._etcd_healthy(), timeout=30, message="etcd to answer (see " + str(self.log_file("etcd")) + ")")
        self._start("kube-apiserver", self._apiserver_args())
        wait_for(lambda: self._get("/readyz") == "ok", timeout=timeout, interval=1,
                 message=f"kube-apiserver /readyz (see {self.log_file('kube-apiserver')})")
        self._start("kube-controller-manager", self._controller_manager_args())
        self._start("kube-scheduler", self._scheduler_args())
        self._start("kwok", self._kwok_args())
        self.kubectl("apply", "-f", str(self.bin_dir / "kwok-storage-class.yaml"))
        for node in nodes.default_nodes(gpu_nodes, cpu_nodes):
            self.apply_node(node)
        wait_for(self._default_service_account_ready, timeout=60, message="the default ServiceAccount (controller-manager)")
        log(f"control plane up in {time.monotonic() - started:.0f}s: {self.server}")
        log(f"kubeconfig: {self.kubeconfig}   try: kubectl --kubeconfig {self.kubeconfig} get nodes -L {nodes.GPU_PRODUCT_LABEL}")
        return self

    def agent_state_dir(self, node: str) -> Path:
        return self.state_dir / "agent" / node

    def node_agent_running(self, node: str) -> bool:
        return self._running(f"node-agent-{node}")

    def start_node_agent(self, node: str, timeout: float = 60) -> None:
        """Start the development node agent for `node` in the background; wait until the node is Ready."""
        component = f"node-agent-{node}"
        if not self.node_agent_running(node):
            self._start(component, ["-m", "devcluster", "agent", "--node", node,
                                    "--state-dir", str(self.agent_state_dir(node)),
                                    "--kubeconfig", str(self.state_dir / "node-agent.kubeconfig")],
                        program=sys.executable, env={"PERSONALAI_POD_ADDRESS_PREFIX": self.pod_address_prefix})
        wait_for(lambda: self.node_ready(node), timeout=timeout, message=f"node {node} Ready (see {self.log_file(component)})")

    def down(self, quiet: bool = False) -> None:
        """Stop every component and forget the cluster's state."""
        agents = [p.stem for p in (self.state_dir / "run").glob("node-agent-*.pid")]
        for component in agents + list(reversed(COMPONENTS)):
            pid_file = self._pid_file(component)
            try:
                pid = int(pid_file.read_text())
                os.killpg(pid, signal.SIGTERM)
                wait_for(lambda pid=pid: not _alive(pid), timeout=15, interval=0.2, message=f"{component} to stop")
            except (OSError, ValueError):
                pass
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        if self.state_dir.exists():
            import shutil
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if not quiet:
            log("control plane stopped")

    def _start(self, component: str, args: list[str], program: str | None = None,
               env: dict[str, str] | None = None) -> None:
        binary = program or self.bin_dir / ("kwok" if component == "kwok" else component)
        log(f"starting {component}")
        with self.log_file(component).open("ab") as out:
            process = subprocess.Popen([str(binary), *args], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.state_dir,
                                       env={**os.environ, **(env or {})})
        self._pid_file(component).write_text(str(process.pid))
        time.sleep(0.3)
        if process.poll() is not None:
            tail = "\n    ".join(self.log_file(component).read_text().splitlines()[-15:])
            raise RuntimeError(f"{component} exited at once (code {process.returncode})\n  command: {binary} "
                               f"{' '.join(args)}\n  log: {self.log_file(component)}\n    {tail}")

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as response:
            return json.loads(response.read()).get("health") == "true"

    def _default_service_account_ready(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    # -- component flags -----------------------------------------------------------------------
    def _write_kubeconfigs(self) -> None:
        p = self.pki
        for stem, user in (("admin", "kubernetes-admin"), ("controller-manager", "system:kube-controller-manager"),
                           ("scheduler", "system:kube-scheduler"), ("kwok", "kwok-controller"),
                           ("node-agent", "personalai-dev-node-agent")):
            config = build_kubeconfig(self.server, p.ca_cert, p.client_cert(stem), p.client_key(stem), user)
            path = self.kubeconfig if stem == "admin" else self.state_dir / f"{stem}.kubeconfig"
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)

    def _etcd_args(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_port + 10}"
        return ["--name=default", f"--data-dir={self.state_dir / 'etcd'}", f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=default={peer}",
                "--log-level=warn", "--unsafe-no-fsync",  # a throwaway test store: durability buys nothing here
                "--quota-backend-bytes=2147483648"]

    def _apiserver_args(self) -> list[str]:
        p = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={p.apiserver_cert}", f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.service_account_pub}",
            f"--service-account-signing-key-file={p.service_account_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # The loopback address cannot be an Endpoints address; in-cluster clients of the dev node
            # agent reach the apiserver on loopback directly.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=1",
        ]

    def _controller_manager_args(self) -> list[str]:
        p = self.pki
        kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p.service_account_key}", f"--root-ca-file={p.ca_cert}",
                f"--cluster-signing-cert-file={p.ca_cert}", f"--cluster-signing-key-file={p.ca_key}",
                "--controllers=*", "--secure-port=0", "--profiling=false", "--v=1",
                # Simulated nodes: quicker eviction decisions keep failure tests short.
                "--node-monitor-grace-period=40s"]

    def _scheduler_args(self) -> list[str]:
        kubeconfig = self.state_dir / "scheduler.kubeconfig"
        return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false", "--secure-port=0",
                "--profiling=false", "--v=1"]

    def _kwok_args(self) -> list[str]:
        return [f"--kubeconfig={self.state_dir / 'kwok.kubeconfig'}",
                f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
                f"--config={self.bin_dir / 'kwok-stages.yaml'}",
                "--node-lease-duration-seconds=40", "--cidr=10.0.0.0/16", "--node-ip=10.0.0.1", "-v=WARN"]

    # -- clients -------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG set, the cached kubectl and helm first on PATH."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "HELM_CACHE_HOME": str(self.state_dir / "helm" / "cache"),
                "HELM_CONFIG_HOME": str(self.state_dir / "helm" / "config"),
                "HELM_DATA_HOME": str(self.state_dir / "helm" / "data")}

    def _tool(self, name: str, args: tuple[str, ...], input: str | None, check: bool, timeout: float):
        command = [str(self.bin_dir / name), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, command, result.stdout, result.stderr)
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        return self._tool("kubectl", args, input, check, timeout)

    def helm(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        return self._tool("helm", args, input, check, timeout)

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def apply_node(self, node: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(node))

    def add_gpu_node(self, name: str, gpus: int = 1, labels: dict[str, str] | None = None,
                     extra_capacity: dict[str, str] | None = None) -> None:
        """Add a simulated RTX 5090 node and wait until it is Ready."""
        self.apply_node(nodes.build_node(name, gpus=gpus, labels=labels, extra_capacity=extra_capacity))
        wait_for(lambda: self.node_ready(name), timeout=60, message=f"node {name} Ready")

    def delete_node(self, name: str) -> None:
        self.kubectl("delete", "node", name, "--ignore-not-found", "--wait=true")

    def node_ready(self, name: str) -> bool:
        out = self.kubectl("get", "node", name, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        return out.stdout.strip() == "True"


def _alive(pid: int) -> bool:
    try:  # a component this process started is its child: reap it, or it lingers as a zombie that "exists"
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
