"""Deleting a PersonalAI erases what was made for it, then says so: a DataPurged Event while the
object still exists and an audit record that outlives it. With the operator down it stays Terminating."""

from __future__ import annotations

import json

import pytest
from cluster_harness import Suite, get_json, items
from serving.serving_cluster_helpers import create_personalai, finish_run, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
# Everything labelled with a PersonalAI, ReplicaSets included (the Deployment's, left to the garbage collector).
LABELLED_KINDS = ("trainingruns", "jobs", "pods", "deployments", "replicasets", "services", "configmaps", "secrets",
                  "serviceaccounts", "roles", "rolebindings", "persistentvolumeclaims")


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory):
    return tmp_path_factory.mktemp("opt-audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def suite(audit_log) -> Suite:
    """The operator suite's share, with the audit stream in a file this test can read."""
    return Suite(prefix="opt", gpu_product="NVIDIA-GeForce-RTX-5090-OPTEST", nodes=("opt-rtx5090-0", "opt-rtx5090-1"),
                 settings={"PERSONALAI_AUDIT_LOG": str(audit_log)})


def audit_records(audit_log, event: str) -> list[dict]:
    lines = audit_log.read_text().splitlines() if audit_log.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


def labelled(cluster, ns: str, name: str) -> dict[str, list[str]]:
    found = {kind: [o["metadata"]["name"] for o in items(cluster, kind, ns, f"personalai.dev/personalai={name}")]
             for kind in LABELLED_KINDS}
    return {kind: names for kind, names in found.items() if names}


def finalized(cluster, ns: str, name: str) -> dict:
    return wait_for(lambda: (lambda p: p if FINALIZER in (p or {}).get("metadata", {}).get("finalizers", []) else None)(
        get_json(cluster, "personalais", name, "-n", ns)), timeout=60, message=f"kopf's finalizer on {name}")


def purged_events(cluster, ns: str, name: str) -> list[dict]:
    events = items(cluster, "events", ns)
    return [e for e in events if e["reason"] == "DataPurged" and e["involvedObject"]["name"] == name]


def test_deleting_a_served_personalai_erases_everything_and_records_it(cluster, operator, ns, audit_log):
    create_personalai(cluster, ns, "ada")
    finish_run(cluster, ns, "ada")
    wait_serving(cluster, ns, "ada")
    uid = finalized(cluster, ns, "ada")["metadata"]["uid"]
    made = labelled(cluster, ns, "ada")
    assert {"trainingruns", "jobs", "deployments", "services", "secrets", "persistentvolumeclaims"} <= set(made), made
    assert [r["adapterVersion"] for r in audit_records(audit_log, "promotion") if r["uid"] == uid]

    cluster.kubectl("delete", "personalais", "ada", "-n", ns, "--wait=true", timeout=180)

    events = purged_events(cluster, ns, "ada")
    assert events and events[0]["type"] == "Normal" and "Erased" in events[0]["message"], events
    record = next(r for r in audit_records(audit_log, "erasure") if r["uid"] == uid)
    assert (record["namespace"], record["personalai"]) == (ns, "ada")
    assert record["removed"]["PersistentVolumeClaim"] == 2 and record["removed"]["Deployment"] == 1, record
    assert record["durationSeconds"] >= 0 and "Secret" not in record["removed"], record
    # The chat token Secret (no personal data) and the ReplicaSet go with the garbage collector.
    wait_for(lambda: not labelled(cluster, ns, "ada"), timeout=60, message="nothing labelled with ada")
    assert "thought0" not in audit_log.read_text()  # identifiers and counts only, never the reflections
    assert get_json(cluster, "secrets", "ada-reflections", "-n", ns) is not None  # the person's own Secret stays


def test_with_the_operator_down_a_deleted_personalai_waits_for_it(cluster, operator, ns, audit_log):
    create_personalai(cluster, ns, "bea")
    finish_run(cluster, ns, "bea")
    uid = finalized(cluster, ns, "bea")["metadata"]["uid"]
    operator.stop()
    try:
        cluster.kubectl("delete", "personalais", "bea", "-n", ns, "--wait=false")
        with pytest.raises(TimeoutError):
            wait_for(lambda: get_json(cluster, "personalais", "bea", "-n", ns) is None, timeout=10, message="bea")
        terminating = get_json(cluster, "personalais", "bea", "-n", ns)
        assert terminating["metadata"].get("deletionTimestamp") and FINALIZER in terminating["metadata"]["finalizers"]
        assert labelled(cluster, ns, "bea").get("persistentvolumeclaims")  # nothing erased while no one is looking
    finally:
        operator.start()
    wait_for(lambda: get_json(cluster, "personalais", "bea", "-n", ns) is None, timeout=180, message="bea erased")
    assert purged_events(cluster, ns, "bea")
    assert any(r["uid"] == uid for r in audit_records(audit_log, "erasure"))
    wait_for(lambda: not labelled(cluster, ns, "bea"), timeout=60, message="nothing labelled with bea")


def test_deleting_the_namespace_erases_its_personalais_and_the_namespace_goes(cluster, operator, ns, audit_log):
    """`kubectl delete namespace` with a PersonalAI in it: the operator keeps serving the namespace while
    it is Terminating (kopf alone would stop, leaving its finalizers for ever), so erasure runs, is
    recorded, and the namespace is gone."""
    create_personalai(cluster, ns, "ida")
    finish_run(cluster, ns, "ida")
    uid = finalized(cluster, ns, "ida")["metadata"]["uid"]
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: get_json(cluster, "namespace", ns) is None, timeout=120, interval=1,
             message=f"namespace {ns} gone")
    assert [record["uid"] for record in audit_records(audit_log, "erasure")].count(uid) == 1
