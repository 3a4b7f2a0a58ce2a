"""spec.retention.artifactDays on a real control plane: the operator's prune Job names exactly the expired
artifacts (a rejected adapter, old runs' checkpoints) and nothing in use (the current adapter, the rollback
history) or young; once it completes, an Event, the ledger and an audit record say what went.

The runs are made old the way the record of a real one would be: their Jobs removed (as the finished-Job
TTL does) and the run's status completionTime written days back, as if the run had ended then. No
operator clock setting: the status is what the operator reads, and nothing rewrites a finished run's
status once its Job is gone."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cluster_harness import Suite, get_json, items
from serving.serving_cluster_helpers import create_personalai, finish_run, personalai, server_pods, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster
NAME = "ada"
PRUNE_SELECTOR = f"personalai.dev/personalai={NAME},personalai.dev/component=artifact-prune"


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Suite:
    """The operator suite's share, writing its audit stream where this test reads it."""
    audit = tmp_path_factory.mktemp("opt-retention-audit") / "audit.jsonl"
    return Suite(prefix="opt", gpu_product="NVIDIA-GeForce-RTX-5090-OPTEST", nodes=("opt-rtx5090-0", "opt-rtx5090-1"),
                 settings={"PERSONALAI_AUDIT_LOG": str(audit)})


def retrain(cluster, ns: str, epochs: int, passed: bool, known: tuple[str, ...]) -> dict:
    cluster.kubectl("patch", "personalais", NAME, "-n", ns, "--type=merge",
                    "-p", json.dumps({"spec": {"training": {"epochs": epochs}}}))
    return finish_run(cluster, ns, NAME, passed=passed, known=known)


def recorded(cluster, ns: str, current: str, history: list[str]) -> dict:
    def settled():
        status = (personalai(cluster, ns, NAME) or {}).get("status") or {}
        seen = [record["version"] for record in status.get("adapterHistory") or []]
        return status if (status.get("currentAdapter") or {}).get("version") == current and seen == history else None
    return wait_for(settled, timeout=60, message=f"current {current}, history {history}")


def end_long_ago(cluster, ns: str, run: str, days: int) -> None:
    cluster.kubectl("delete", "job", run, "-n", ns, "--wait=true", "--ignore-not-found", timeout=60)
    ended = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl("patch", "trainingruns", run, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"completionTime": ended}}))


def named_paths(jobs: list[dict]) -> set[str]:
    """The paths every prune Job was told to remove (its command after `--`)."""
    named: set[str] = set()
    for job in jobs:
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        named |= set(command[command.index("--") + 1:])
    return named


def test_expired_artifacts_not_in_use_are_pruned_and_recorded(cluster, suite, operator, ns):
    audit_log = Path(suite.settings["PERSONALAI_AUDIT_LOG"])
    create_personalai(cluster, ns, NAME)
    first = finish_run(cluster, ns, NAME)  # promoted, later in the rollback history: kept
    second = retrain(cluster, ns, 2, passed=False, known=(first["metadata"]["name"],))  # rejected: may go
    third = retrain(cluster, ns, 3, passed=True, known=(first["metadata"]["name"], second["metadata"]["name"]))
    v1, v2, v3 = (run["spec"]["adapterVersion"] for run in (first, second, third))
    recorded(cluster, ns, current=v3, history=[v1, v2])
    wait_serving(cluster, ns, NAME)
    assert not items(cluster, "jobs", ns, PRUNE_SELECTOR)  # everything is young: nothing to prune

    for run in (first, second):  # the third, current run ended just now: its checkpoints are young
        end_long_ago(cluster, ns, run["metadata"]["name"], days=100)
    expected = {f"checkpoints/{first['metadata']['name']}", v2, f"checkpoints/{second['metadata']['name']}"}

    def all_named():
        jobs = items(cluster, "jobs", ns, PRUNE_SELECTOR)
        assert named_paths(jobs) <= expected, f"a prune Job names something in use or young: {named_paths(jobs)}"
        return jobs if named_paths(jobs) == expected else None

    jobs = wait_for(all_named, timeout=90, message=f"prune Jobs naming {sorted(expected)}")
    server_nodes = {p["spec"]["nodeName"] for p in server_pods(cluster, ns, NAME)}
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["nodeSelector"]["kubernetes.io/hostname"] in server_nodes  # where the RWO volume is attached
        assert job["metadata"]["ownerReferences"][0]["name"] == NAME

    ledger = wait_for(lambda: (lambda cm: cm if cm and set(json.loads(cm["data"]["pruned.json"])) == expected else None)(
        get_json(cluster, "configmap", f"{NAME}-artifact-retention", "-n", ns)), timeout=90,
        message="the retention ledger recording every pruned path")
    assert ledger["metadata"]["ownerReferences"][0]["name"] == NAME
    runs = {first["metadata"]["name"], second["metadata"]["name"]}

    def announced():  # the Event and the audit record follow the ledger
        events = [e for e in items(cluster, "events", ns) if e["reason"] == "ArtifactsPruned"]
        return events if all(name in " ".join(e["message"] for e in events) for name in (v2, *runs)) else None

    events = wait_for(announced, timeout=30, message="ArtifactsPruned Events naming every pruned artifact")
    assert all(e["involvedObject"]["name"] == NAME for e in events), events
    assert v1 not in " ".join(e["message"] for e in events) and v3 not in " ".join(e["message"] for e in events)
    def audited():
        lines = audit_log.read_text().splitlines() if audit_log.exists() else []
        records = [r for r in map(json.loads, lines) if r["event"] == "artifact-retention" and r["namespace"] == ns]
        return records if {run for r in records for run in r["checkpoints"]} == runs else None

    records = wait_for(audited, timeout=30, message="the artifact-retention audit records")
    assert {v for r in records for v in r["adapters"]} == {v2}, records
    assert "thought0" not in audit_log.read_text()  # identifiers only, never the reflections
