"""Never a second Job for one run: not on re-apply, not when the operator is killed mid-reconcile,
not when two reconciles race into 409 conflicts."""

import json
import threading

import pytest
from cluster_harness import EXAMPLES, get_json, items

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

    operator.stop()  # the shared operator would otherwise take part in the race
    try:
        # Luke's PersonalAI, and a run of his made as the operator would make one (owned by him, his
        # reflections): the operator starts trainers only for a PersonalAI's own runs.
        cluster.kubectl("apply", "--server-side", "-n", ns, "-f", str(EXAMPLES))
        luke = get_json(cluster, "personalais", "luke", "-n", ns)
        hand_made = {
            "apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "race-1", "labels": {"personalai.dev/personalai": "luke"},
                         "ownerReferences": [{"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
                                              "name": "luke", "uid": luke["metadata"]["uid"]}]},
            "spec": {"personalAI": "luke", "adapterVersion": "v1-race", "reflections": luke["spec"]["reflections"]},
        }
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
             == "Succeeded", timeout=90, message="the raced run to finish")
    # One Job for the raced run (the restarted operator also makes luke's own run, with its own Job).
    assert [j["metadata"]["name"] for j in items(cluster, "jobs", ns)].count("race-1") == 1
