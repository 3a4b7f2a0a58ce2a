"""The operator under faults: a crash between the Job and its status, SIGKILL under load, downtime
during changes, a second status writer, and an API server answering 500 and 429.

Every test starts its own operator processes (a crashing one, one behind the fault proxy), so this
module has its own suite, `opf-*`, and never runs the shared `operator` fixture next to them. The
PersonalAIs here serve nothing and keep adapters in emptyDirs: the faults are in the reconcile of
runs and Jobs, and fewer objects keep 50 of them light enough for CI's two cores.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import kubernetes
import pytest
from cluster_harness import (
    EXAMPLES,
    GROUP_VERSION,
    OperatorProcess,
    Suite,
    condition,
    get_json,
    items,
    personalai_manifest,
    secret_manifest,
    take_every_gpu,
)
from fault_proxy import FaultProxy

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster
CONVERGE_SECONDS = 60
REFLECTIONS = (EXAMPLES / "reflections" / "luke.jsonl").read_text()
KEY = "luke.jsonl"


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(prefix="opf", gpu_product="NVIDIA-GeForce-RTX-5090-OPFAULT", nodes=("opf-rtx5090-0",),
                 settings={"PERSONALAI_ARTIFACTS_VOLUME": "emptyDir", "PERSONALAI_MODEL_CACHE_CLAIM": ""})


@pytest.fixture
def proxy(cluster, tmp_path):
    proxy = FaultProxy(cluster.kubeconfig, tmp_path).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def fault_ns(cluster, crds, gpu_nodes, suite, start_operator, request):
    """A fresh namespace, emptied afterwards while the test's last operator still runs: each PersonalAI's
    erasure (kopf's finalizer) needs it. Deleted first and waited for, rather than left to the namespace
    controller, so the next test never shares the machine with fifty erasures."""
    name = suite.namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "personalais", "--all", "-n", name, "--wait=false", check=False)
    try:
        wait_for(lambda: not items(cluster, "personalais", name), timeout=120, interval=1,
                 message=f"the PersonalAIs of {name} erased")
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def start_operator(cluster, suite, tmp_path):
    """Start an operator of this suite (extra PERSONALAI_* settings, another kubeconfig); all stopped after."""
    started: list[OperatorProcess] = []

    def start(kubeconfig: Path | None = None, **settings: str) -> OperatorProcess:
        process = OperatorProcess(tmp_path / f"operator-{len(started)}.log", kubeconfig or cluster.kubeconfig,
                                  {**suite.operator_settings(), **settings})
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def apply_people(cluster, namespace: str, names: list[str], **spec) -> None:
    """Each person's reflections Secret and PersonalAI, in one kubectl call."""
    objects = []
    for name in names:
        objects.append(json.loads(secret_manifest(f"{name}-reflections", KEY, REFLECTIONS, name)))
        objects.append(json.loads(personalai_manifest(name, f"{name}-reflections", KEY,
                                                      serving={"enabled": False}, **spec)))
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def is_superseded(run: dict) -> bool:
    return condition(run, "Failed").get("reason") == "Superseded"


def one_run_and_job_each(cluster, namespace: str, people: list[str]) -> dict[str, str] | None:
    """person -> the name of their one live run, once each of `people` (and nobody else) has exactly one
    live TrainingRun, one Job of that name, and that run's status names it; None until then."""
    runs = [run for run in items(cluster, "trainingruns", namespace) if not is_superseded(run)]
    jobs = sorted(job["metadata"]["name"] for job in items(cluster, "jobs", namespace))
    owners = Counter(run["spec"]["personalAI"] for run in runs)
    if sorted(owners) != sorted(people) or set(owners.values()) != {1}:
        return None
    if jobs != sorted(run["metadata"]["name"] for run in runs):
        return None
    if any((run.get("status") or {}).get("jobName") != run["metadata"]["name"] for run in runs):
        return None
    return {run["spec"]["personalAI"]: run["metadata"]["name"] for run in runs}


def converge(cluster, namespace: str, people: list[str], since: float, what: str) -> dict[str, str]:
    left = CONVERGE_SECONDS - (time.monotonic() - since)
    try:
        return wait_for(lambda: one_run_and_job_each(cluster, namespace, people), timeout=max(left, 1), interval=1,
                        message=f"one TrainingRun and one Job for each of {len(people)} PersonalAIs {what}")
    except TimeoutError as error:
        runs = {run["metadata"]["name"]: (run["spec"]["personalAI"], (run.get("status") or {}).get("phase"),
                                          is_superseded(run)) for run in items(cluster, "trainingruns", namespace)}
        jobs = [job["metadata"]["name"] for job in items(cluster, "jobs", namespace)]
        raise TimeoutError(f"{error}; runs (person, phase, superseded): {runs}; jobs: {jobs}") from None


def test_crash_after_the_job_is_created_converges_to_that_one_job(cluster, start_operator, fault_ns):
    crashing = start_operator(PERSONALAI_FAULT_CRASH_AFTER="job-created")
    apply_people(cluster, fault_ns, ["ada"])
    wait_for(lambda: crashing.process.poll() is not None, timeout=60, message="the injected crash")
    assert crashing.process.returncode == 1
    [job] = items(cluster, "jobs", fault_ns)
    [run] = items(cluster, "trainingruns", fault_ns)
    assert "jobName" not in (run.get("status") or {})  # it died before saying so
    since = time.monotonic()
    start_operator()
    assert converge(cluster, fault_ns, ["ada"], since, "after the crash") == {"ada": job["metadata"]["name"]}
    [again] = items(cluster, "jobs", fault_ns)
    assert again["metadata"]["uid"] == job["metadata"]["uid"]


def test_sigkill_while_50_are_reconciled_converges_to_one_run_and_job_each(cluster, start_operator, fault_ns):
    people = [f"p{i:02d}" for i in range(50)]
    operator = start_operator()
    apply_people(cluster, fault_ns, people)
    # Mid-flight: some runs made, most not, Jobs being created for some.
    wait_for(lambda: len(items(cluster, "trainingruns", fault_ns)) >= 10, timeout=90, interval=0.2,
             message="the first runs")
    operator.kill()
    made_before = len(items(cluster, "trainingruns", fault_ns))
    since = time.monotonic()
    operator.start()
    converge(cluster, fault_ns, people, since, "after SIGKILL")
    assert made_before < len(people), "the kill came too late to interrupt anything"
    assert len(items(cluster, "trainingruns", fault_ns)) == len(people)


def test_changes_made_while_the_operator_is_down_converge_after_restart(cluster, suite, start_operator, fault_ns):
    take_every_gpu(cluster, suite, fault_ns)  # runs stay queued, so an edit supersedes one rather than a finished one
    first = [f"a{i}" for i in range(10)]
    operator = start_operator()
    apply_people(cluster, fault_ns, first)
    before = converge(cluster, fault_ns, first, time.monotonic(), "before the downtime")
    operator.stop()
    added, edited, deleted = [f"b{i}" for i in range(10)], first[:5], first[5:]
    apply_people(cluster, fault_ns, added)
    for name in edited:  # new training config: a new run, the old one superseded and its Job gone
        cluster.kubectl("patch", "personalai", name, "-n", fault_ns, "--type=merge",
                        "-p", json.dumps({"spec": {"training": {"epochs": 2}}}))
    cluster.kubectl("delete", "personalai", *deleted, "-n", fault_ns, "--wait=false")
    since = time.monotonic()
    operator.start()
    after = converge(cluster, fault_ns, added + edited, since, "after the restart")
    wait_for(lambda: not {p["metadata"]["name"] for p in items(cluster, "personalais", fault_ns)} & set(deleted),
             timeout=max(CONVERGE_SECONDS - (time.monotonic() - since), 1), message="the deleted ones erased")
    assert all(after[name] != before[name] for name in edited)
    assert not [run for run in items(cluster, "trainingruns", fault_ns) if run["spec"]["personalAI"] in deleted]


def test_a_second_status_writer_loses_no_condition(cluster, start_operator, fault_ns):
    """Another controller applies its own condition every 100 ms (server-side apply, its own field
    manager) while the operator takes the run from Pending to Succeeded. A watch sees every version
    of both objects: once there, that condition is never gone nor rolled back to an older check."""
    custom = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    start_operator()
    apply_people(cluster, fault_ns, ["grace"])
    run_name = wait_for(lambda: [r["metadata"]["name"] for r in items(cluster, "trainingruns", fault_ns)],
                        timeout=60, message="the run")[0]
    targets = (("trainingruns", run_name, "TrainingRun"), ("personalais", "grace", "PersonalAI"))
    stop, lost, writes, operator_writes = threading.Event(), [], Counter(), Counter()

    def second_writer() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            for plural, name, kind in targets:
                body = {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": {"name": name}, "status": {
                    "conditions": [{"type": "PolicyChecked", "status": "True", "reason": "Checked",
                                    "message": f"check {count}", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
                custom.patch_namespaced_custom_object_status(
                    "personalai.dev", "v1alpha1", fault_ns, plural, name, body, field_manager="policy-checker",
                    force=True, _content_type="application/apply-patch+yaml")
                writes[plural] += 1
            stop.wait(0.1)

    def watch(plural: str, name: str) -> None:
        best, others = 0, None
        stream = kubernetes.watch.Watch().stream(custom.list_namespaced_custom_object, "personalai.dev", "v1alpha1",
                                                 fault_ns, plural, field_selector=f"metadata.name={name}",
                                                 timeout_seconds=120)
        for event in stream:
            status = event["object"].get("status") or {}
            message = condition(event["object"], "PolicyChecked").get("message")
            seen = int(message.split()[-1]) if message else 0
            if seen < best:  # gone (0) or an older check put back
                lost.append((plural, best, message))
            best = max(best, seen)
            mine = (status.get("phase"), [c for c in status.get("conditions") or [] if c["type"] != "PolicyChecked"])
            operator_writes[plural] += mine != others
            others = mine
            if stop.is_set():
                return

    threads = [threading.Thread(target=watch, args=(plural, name), daemon=True) for plural, name, _ in targets]
    threads.append(threading.Thread(target=second_writer, daemon=True))
    for thread in threads:
        thread.start()
    try:
        run = wait_for(lambda: (r := get_json(cluster, "trainingruns", run_name, "-n", fault_ns))
                       and (r.get("status") or {}).get("phase") == "Succeeded" and r, timeout=90,
                       message="the run to succeed")
        time.sleep(3)  # the PersonalAI's own writes for the finished run
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert lost == []
    assert min(writes.values()) >= 10 and min(operator_writes.values()) >= 3, (writes, operator_writes)
    assert {"Queued", "Running", "Succeeded", "Failed", "Validated", "PolicyChecked"} <= {
        c["type"] for c in run["status"]["conditions"]}
    grace = get_json(cluster, "personalais", "grace", "-n", fault_ns)
    assert {"DataReady", "Trained", "Ready", "PolicyChecked"} <= {c["type"] for c in grace["status"]["conditions"]}


RETRY_LINE = re.compile(r"Handler '(\S+)' failed temporarily: HTTP (\d+) .*?; retry (\d+) in ([\d.]+)s")


def test_500_and_429_back_off_with_growth_a_cap_and_retry_after(cluster, proxy, start_operator, fault_ns):
    """Throttled first (Retry-After longer than the early backoff), then failing: the delays kopf is
    given honour Retry-After, then double from where the retries got to, up to the cap. (urllib3 in
    the client first retries a 429 three times itself, sleeping Retry-After: the window outlasts that.)"""
    base, cap, retry_after = 0.5, 8.0, 3
    operator = start_operator(proxy.kubeconfig, PERSONALAI_BACKOFF_BASE_SECONDS=str(base),
                              PERSONALAI_BACKOFF_CAP_SECONDS=str(cap))
    proxy.fail(429, seconds=20, retry_after=retry_after)
    apply_people(cluster, fault_ns, ["hopper"])  # straight to the API server: kopf's watch sees it
    time.sleep(20)
    proxy.fail(500, seconds=16)
    time.sleep(16)
    proxy.heal()
    converge(cluster, fault_ns, ["hopper"], time.monotonic(), "after the API recovered")
    assert proxy.faulted[429] and proxy.faulted[500]
    retries = [(handler, int(status), int(attempt), float(delay))
               for handler, status, attempt, delay in RETRY_LINE.findall(operator.log_text())]
    throttled = [delay for _, status, _, delay in retries if status == 429]
    assert throttled and all(retry_after <= delay <= cap for delay in throttled), throttled
    failing = [(attempt, delay) for handler, status, attempt, delay in retries if handler == "create" and status == 500]
    ceilings = [min(cap, base * 2 ** (attempt - 1)) for attempt, _ in failing]
    assert all(ceiling / 2 <= delay <= ceiling for ceiling, (_, delay) in zip(ceilings, failing)), failing
    assert len(set(ceilings)) >= 2 and max(ceilings) == cap, f"no growth up to the cap: {failing}"
