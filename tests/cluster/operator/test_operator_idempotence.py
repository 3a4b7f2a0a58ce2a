"""Never a second Job for one run: not on re-apply, not when the operator is killed mid-reconcile,
not when two reconciles race into 409 conflicts."""

import threading

import pytest
from operator_cluster_helpers import EXAMPLES, get_json, items

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_killed_mid_reconcile_makes_one_job(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    # Kill -9 as soon as the run exists: its children are being created right now.
    wait_for(lambda: items(cluster, "trainingruns", ns), timeout=60, interval=0.05, message="the run")
    operator.restart(kill=True)
    run = items(cluster, "trainingruns", ns)[0]["metadata"]["name"]
    wait_for(lambda: (get_json(cluster, "trainingruns", run, "-n", ns).get("status") or {}).get("phase")
             == "Succeeded", timeout=90, message="the run to finish after the restart")
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    operator.restart(kill=False)  # resume handlers run again over everything that exists
    wait_for(operator.alive, timeout=30)
    assert len(items(cluster, "trainingruns", ns)) == 1
    assert [j["metadata"]["name"] for j in items(cluster, "jobs", ns)] == [run]
    assert len(items(cluster, "pods", ns, f"personalai.dev/training-run={run}")) == 1


def test_racing_reconciles_conflict_into_one_job(cluster, operator, ns, monkeypatch):
    """Four reconciles of one run at once, in this process, bypassing the per-object lock: every
    create after the first gets 409 AlreadyExists and uses the existing object."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    from personalai_operator.handlers import training_run

    hand_made = {
        "apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "race-1"},
        "spec": {"personalAI": "race", "adapterVersion": "v1-race",
                 "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}},
    }
    import json
    operator.stop()  # the shared operator would otherwise take part in the race
    try:
        cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "luke-reflections-secret.yaml"))
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(hand_made))
        errors, phases = [], []
        barrier = threading.Barrier(4)

        def reconcile():
            barrier.wait()
            try:
                phases.append(training_run._reconcile(ns, "race-1"))
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=reconcile) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == [] and len(phases) == 4
        assert [j["metadata"]["name"] for j in items(cluster, "jobs", ns)] == ["race-1"]
        assert len(items(cluster, "configmaps", ns, "personalai.dev/training-run=race-1")) == 1
    finally:
        operator.start()
    wait_for(lambda: (get_json(cluster, "trainingruns", "race-1", "-n", ns).get("status") or {}).get("phase")
             == "Succeeded", timeout=90, message="the hand-made run to finish")
    assert len(items(cluster, "jobs", ns)) == 1
