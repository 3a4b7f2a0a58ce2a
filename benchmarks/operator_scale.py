"""The operator at scale on the local control plane: latency to first objects, convergence, memory and
API requests per idle PersonalAI, in one run.

    .venv/bin/python benchmarks/operator_scale.py                        # 50 nodes, 1,000 PersonalAIs
    .venv/bin/python benchmarks/operator_scale.py --preset ci            # 10 nodes, 100 PersonalAIs
    .venv/bin/python benchmarks/operator_scale.py --nodes 20 --personalais 300 --resync-seconds 30

On the running local control plane (`python -m devcluster up`; its PERSONALAI_* settings apply), it adds
--nodes simulated RTX 5090 nodes (one GPU each) with a product label of this run's own, starts the
operator as a process watching only this run's --namespaces namespaces, then creates --personalais
PersonalAIs (each with its reflections Secret, the example's, created first) from a thread pool and
watches TrainingRuns and Jobs. It reports, per PersonalAI, create -> TrainingRun and create -> Job
(p50/p95/p99/max, from the client's clock when the create call returned to the watch event that
showed the object), the time until every one has both, objects per second, and the operator's RSS
(peak while converging; steady, after the idle window), and the CPU time each process sharing the
machine used while converging (the plane's components, the operator, this client): on a small machine
the cores, not the client rate limit, decide how fast the operator converges.

The operator's own requests until converged (per PersonalAI, by verb, resource and code) and the time
they waited for its client-side rate limit come from its metrics (personalai_operator_api_*).

API requests per idle PersonalAI per resync come from the API server's own counter
(`apiserver_request_total`, by verb, resource and code). The shared control plane also serves kwok,
the scheduler and the controller-manager, so the same window is counted twice in one run: once with
the operator running and nothing changing, once with the operator stopped (the reference). The
difference is the operator's. Long-running WATCH requests count when they start.

The nodes, namespaces (and everything in them) are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from personalai_operator.naming import LABEL_PERSONALAI
from personalai_operator.reflections_access import REFLECTIONS_FOR

REPO = Path(__file__).resolve().parents[1]
REFLECTIONS = REPO / "examples" / "reflections" / "luke.jsonl"
GROUP, VERSION = "personalai.dev", "v1alpha1"
PRESETS = {"full": (50, 1000, 10), "ci": (10, 100, 10)}
REQUEST_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    if not values:
        return "no data"
    return (f"p50 {percentile(values, 0.5):.2f} s  p95 {percentile(values, 0.95):.2f} s  "
            f"p99 {percentile(values, 0.99):.2f} s  max {max(values):.2f} s  (n={len(values)})")


def request_counts(plane) -> Counter:
    """apiserver_request_total by (verb, resource/subresource, code), summed over the other labels."""
    text = plane.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    counts: Counter = Counter()
    for line in text.splitlines():
        match = REQUEST_LINE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[(labels.get("verb", ""), resource, labels.get("code", ""))] += float(match["value"])
    return counts


OPERATOR_LINE = re.compile(r'^personalai_operator_(?P<name>api_requests_total|api_throttled_seconds_total)'
                           r'(?:\{(?P<labels>[^}]*)\})? (?P<value>[0-9.e+]+)$')


def operator_requests(port: int) -> tuple[Counter, float]:
    """The operator's own count of its handlers' requests, by (verb, resource, code), and the seconds they
    waited for its client-side rate limit (personalai_operator.metrics); kopf's own requests not included."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts: Counter = Counter()
    throttled = 0.0
    for line in text.splitlines():
        match = OPERATOR_LINE.match(line)
        if not match:
            continue
        if match["name"] == "api_throttled_seconds_total":
            throttled = float(match["value"])
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        counts[(labels.get("verb", ""), labels.get("resource", ""), labels.get("code", ""))] += float(match["value"])
    return counts, throttled


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_holders(plane, operator_pid: int) -> dict[str, int]:
    """The processes that share this machine's cores while the operator converges: the plane's own
    components (from their pid files), the operator, and this benchmark (its client and watches)."""
    holders = {"operator": operator_pid, "benchmark client": os.getpid()}
    for pid_file in sorted((plane.state_dir / "run").glob("*.pid")):
        try:
            holders[pid_file.stem] = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return holders


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Operator:
    """`python -m personalai_operator` watching this run's namespaces, its RSS sampled twice a second."""

    def __init__(self, plane, prefix: str, product: str, resync: int, log: Path):
        self.env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "PERSONALAI_NAMESPACES": f"{prefix}-*",
                    "PERSONALAI_GPU_PRODUCT": product, "PERSONALAI_RESYNC_SECONDS": str(resync),
                    "PERSONALAI_TRAINER_CPU": "1", "PERSONALAI_TRAINER_MEMORY": "1Gi",
                    "PERSONALAI_METRICS_PORT": str(free_port()), "PERSONALAI_LIVENESS_PORT": str(free_port())}
        self.log = log
        self.process: subprocess.Popen | None = None
        self.peak = 0.0
        self._sampling = threading.Event()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "personalai_operator"], cwd=REPO, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        self._sampling.set()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._sampling.is_set() and self.process and self.process.poll() is None:
            self.peak = max(self.peak, rss_mib(self.process.pid))
            time.sleep(0.5)

    def rss(self) -> float:
        return rss_mib(self.process.pid) if self.process else 0.0

    def stop(self) -> None:
        self._sampling.clear()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class Seen:
    """When each PersonalAI's first TrainingRun and first Job appeared, from watches (client clock)."""

    def __init__(self, plane, prefix: str):
        self.plane, self.prefix = plane, prefix
        self.runs: dict[tuple[str, str], float] = {}
        self.jobs: dict[tuple[str, str], float] = {}
        self.last_event = time.monotonic()
        self._stop = threading.Event()

    def start(self) -> None:
        from kubernetes import client

        api = self.plane.api_client()
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
        threading.Thread(target=self._watch, args=(custom.list_cluster_custom_object, self.runs,
                                                   {"group": GROUP, "version": VERSION, "plural": "trainingruns"}),
                         daemon=True).start()
        threading.Thread(target=self._watch, args=(batch.list_job_for_all_namespaces, self.jobs, {}),
                         daemon=True).start()

    def _watch(self, lister, seen: dict, kwargs: dict) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(lister, timeout_seconds=30, **kwargs):
                    obj = event["object"]
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
                    labels = meta.get("labels") or {}
                    namespace = meta["namespace"]
                    owner = labels.get(LABEL_PERSONALAI)
                    if namespace.startswith(f"{self.prefix}-") and owner and event["type"] == "ADDED":
                        seen.setdefault((namespace, owner), time.monotonic())
                        self.last_event = time.monotonic()
                    if self._stop.is_set():
                        return
            except Exception as error:  # a dropped watch is resumed; the timings come from ADDED events
                print(f"   (watch restarted: {type(error).__name__})", flush=True)
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()


def create_people(plane, namespaces: list[str], count: int, workers: int = 16) -> dict[tuple[str, str], float]:
    """Secrets first, then the PersonalAIs, spread over the namespaces; returns when each create returned."""
    from kubernetes import client

    api = plane.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    text = REFLECTIONS.read_text()
    people = [(namespaces[i % len(namespaces)], f"p{i:05d}") for i in range(count)]

    def secret(person):
        namespace, name = person
        core.create_namespaced_secret(namespace, {
            "metadata": {"name": f"{name}-reflections", "annotations": {REFLECTIONS_FOR: name}},
            "stringData": {"reflections.jsonl": text}})

    created: dict[tuple[str, str], float] = {}

    def personalai(person):
        namespace, name = person
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "personalais", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "PersonalAI", "metadata": {"name": name},
            "spec": {"displayName": name, "reflections": {"secretRef": {"name": f"{name}-reflections",
                                                                         "key": "reflections.jsonl"}},
                     "training": {"epochs": 1}}})
        created[person] = time.monotonic()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(secret, people))
        started = time.monotonic()
        list(pool.map(personalai, people))
    print(f"   {count} PersonalAIs created in {time.monotonic() - started:.1f} s", flush=True)
    return created


def operator_share(running: Counter, reference: Counter, people: int, resyncs: float) -> list[tuple[str, float]]:
    """Requests per PersonalAI per resync by verb/resource/code: the running window minus the reference."""
    rows = []
    for key in sorted(set(running) | set(reference)):
        extra = running.get(key, 0) - reference.get(key, 0)
        if extra > 0.5:
            verb, resource, code = key
            rows.append((f"{verb:6} {resource:32} {code}", extra / people / resyncs))
    return sorted(rows, key=lambda row: -row[1])


def clean_up(plane, namespaces: list[str], nodes: list[str], workers: int = 16) -> None:
    """Remove what the run made. The operator is stopped by now, so nothing would run the finalizers of its
    PersonalAIs and TrainingRuns (erasure) or the job-tracking finalizer of pods on simulated nodes: they
    are cleared first (this run's own objects only), or the namespaces would stay Terminating."""
    from kubernetes import client

    api = plane.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    no_finalizers = {"metadata": {"finalizers": None}}

    def clear(namespace: str) -> None:
        for plural in ("personalais", "trainingruns"):
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
                if item["metadata"].get("finalizers"):
                    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural,
                                                          item["metadata"]["name"], no_finalizers)
        for pod in core.list_namespaced_pod(namespace).items:
            if pod.metadata.finalizers:
                core.patch_namespaced_pod(pod.metadata.name, namespace, no_finalizers)
        plane.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(clear, namespaces))
    for node in nodes:
        plane.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--personalais", type=int)
    parser.add_argument("--namespaces", type=int)
    parser.add_argument("--resync-seconds", type=int, default=30)
    parser.add_argument("--idle-resyncs", type=float, default=2, help="length of each counted idle window")
    parser.add_argument("--timeout", type=float, default=900, help="bound on convergence")
    args = parser.parse_args()
    nodes, people, namespace_count = (override or default for override, default in
                                      zip((args.nodes, args.personalais, args.namespaces), PRESETS[args.preset]))

    sys.path.insert(0, str(REPO / "hack"))
    from devcluster.controlplane import ControlPlane
    from devcluster.nodes import GPU_PRODUCT_LABEL, build_node

    plane = ControlPlane()
    if not plane.healthy():
        print("the local control plane is not up: .venv/bin/python -m devcluster up", file=sys.stderr)
        return 2
    run = uuid.uuid4().hex[:6]
    prefix, product = f"scale-{run}", f"NVIDIA-GeForce-RTX-5090-SCALE{run}"
    node_names = [f"{prefix}-gpu-{i}" for i in range(nodes)]
    namespaces = [f"{prefix}-{i}" for i in range(namespace_count)]
    log = Path(tempfile.gettempdir()) / f"operator-scale-{run}.log"
    print(f"== {nodes} nodes, {people} PersonalAIs in {namespace_count} namespaces, resync "
          f"{args.resync_seconds} s (operator log: {log})", flush=True)
    operator = Operator(plane, prefix, product, args.resync_seconds, log)
    seen = Seen(plane, prefix)
    try:
        # The CRDs as the chart or the tests install them (idempotent; a fresh control plane has none).
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for", "condition=Established", "--timeout=60s",
                      "crd/personalais.personalai.dev", "crd/trainingruns.personalai.dev")
        for name in node_names:
            plane.apply_node(build_node(name, gpus=1, labels={GPU_PRODUCT_LABEL: product}))
        for namespace in namespaces:
            plane.kubectl("create", "namespace", namespace)
        operator.start()
        seen.start()
        time.sleep(5)  # the operator's first list of an empty world, and the watches' first list
        print("-- creating", flush=True)
        holders = cpu_holders(plane, operator.process.pid)
        cpu_before = {name: cpu_seconds(pid) for name, pid in holders.items()}
        wall_before = time.monotonic()
        created = create_people(plane, namespaces, people)
        begin = min(created.values())
        deadline = time.monotonic() + args.timeout
        while (len(seen.runs) < people or len(seen.jobs) < people) and time.monotonic() < deadline:
            if operator.process.poll() is not None:
                print(f"the operator exited (code {operator.process.returncode}): see {log}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in holders.items()}
        wall = time.monotonic() - wall_before
        converged = max([*seen.runs.values(), *seen.jobs.values()], default=begin) - begin
        to_run = [seen.runs[p] - created[p] for p in created if p in seen.runs]
        to_job = [seen.jobs[p] - created[p] for p in created if p in seen.jobs]
        peak_converging = operator.peak
        print(f"   create -> TrainingRun  {summary(to_run)}")
        print(f"   create -> Job          {summary(to_job)}")
        print(f"   all converged after {converged:.1f} s ({len(seen.jobs)}/{people} with a Job): "
              f"{people / max(converged, 1e-9):.1f} PersonalAIs per second")
        print(f"   operator RSS peak while converging: {peak_converging:.0f} MiB", flush=True)
        cores = os.cpu_count() or 1
        print(f"   CPU while converging ({wall:.1f} s on {cores} cores, {wall * cores:.0f} CPU-s available): "
              f"{sum(cpu_used.values()):.1f} CPU-s used by")
        for name, used in sorted(cpu_used.items(), key=lambda item: -item[1]):
            print(f"     {name:24} {used:6.1f} CPU-s  {used / people * 1000:5.0f} ms per PersonalAI")
        made, throttled = operator_requests(int(operator.env["PERSONALAI_METRICS_PORT"]))
        print(f"   the operator's handlers' requests until converged, per PersonalAI: "
              f"{sum(made.values()) / people:.1f}; waited {throttled:.1f} s in all for the client rate limit "
              f"(PERSONALAI_API_QPS {os.environ.get('PERSONALAI_API_QPS', 'default')})")
        for (verb, resource, code), value in made.most_common(12):
            print(f"     {verb} {resource} {code}  {value / people:.2f}")

        # Quiet: wait until nothing has appeared for two resyncs (bounded), then count one idle window.
        quiet_deadline = time.monotonic() + 10 * args.resync_seconds
        while time.monotonic() - seen.last_event < 2 * args.resync_seconds and time.monotonic() < quiet_deadline:
            time.sleep(1)
        window = args.idle_resyncs * args.resync_seconds
        print(f"-- idle window of {window:.0f} s with the operator, then the same without it (reference)", flush=True)
        before = request_counts(plane)
        time.sleep(window)
        after = request_counts(plane)
        steady = operator.rss()
        operator.stop()
        time.sleep(3)  # its last requests land before the reference window starts
        reference_before = request_counts(plane)
        time.sleep(window)
        reference_after = request_counts(plane)
        rows = operator_share(after - before, reference_after - reference_before, people, args.idle_resyncs)
        print(f"   operator RSS steady (idle): {steady:.0f} MiB")
        print(f"   API requests per idle PersonalAI per resync: {sum(value for _, value in rows):.2f}")
        for label, value in rows:
            print(f"     {label}  {value:.3f}")
        return 0
    finally:
        seen.stop()
        operator.stop()
        print("-- cleaning up", flush=True)
        clean_up(plane, namespaces, node_names)


if __name__ == "__main__":
    sys.exit(main())
