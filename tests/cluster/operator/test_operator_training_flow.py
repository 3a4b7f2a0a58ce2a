"""kubectl apply -f examples/ -> a TrainingRun -> a Job on an RTX 5090 node -> Succeeded; re-applying
trains nothing new; new data trains again; progress the trainer reports shows in kubectl get."""

import base64
import json
import time

import pytest
from cluster_harness import EXAMPLES, condition, get_json, items

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def _runs(cluster, ns):
    return items(cluster, "trainingruns", ns)


def _phase(cluster, ns, run):
    return ((get_json(cluster, "trainingruns", run, "-n", ns) or {}).get("status") or {}).get("phase")


def test_examples_train_on_an_rtx5090_node(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    runs = wait_for(lambda: _runs(cluster, ns), timeout=60, message="a TrainingRun for luke")
    assert len(runs) == 1
    run = runs[0]["metadata"]["name"]
    assert run.startswith("luke-") and runs[0]["metadata"]["ownerReferences"][0]["kind"] == "PersonalAI"

    job = wait_for(lambda: get_json(cluster, "job", run, "-n", ns), timeout=60, message="the trainer Job")
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["command"][-2:] == ["--config", "/etc/personalai/config.json"]
    pod = wait_for(lambda: [p for p in items(cluster, "pods", ns, f"personalai.dev/training-run={run}")
                            if p["spec"].get("nodeName")], timeout=60, message="the trainer pod scheduled")[0]
    node = get_json(cluster, "node", pod["spec"]["nodeName"])
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"].startswith("NVIDIA-GeForce-RTX-5090")

    wait_for(lambda: _phase(cluster, ns, run) == "Succeeded", timeout=180, message="the run to succeed")
    tr = get_json(cluster, "trainingruns", run, "-n", ns)
    assert condition(tr, "Succeeded")["status"] == "True" and tr["status"]["node"] == pod["spec"]["nodeName"]
    assert tr["status"]["jobName"] == run and tr["status"]["startTime"] and tr["status"]["completionTime"]

    config = json.loads(get_json(cluster, "configmap", f"{run}-config", "-n", ns)["data"]["config.json"])
    assert config["run"]["name"] == run and config["paths"]["reflections"] == "/data/reflections/luke.jsonl"

    # What the trainer patches (kwok runs no trainer): progress shows in the printer columns, and
    # metrics that pass the default gate (the operator recomputes the verdict) promote the adapter.
    adapter = tr["spec"]["adapterVersion"]
    progress = {"status": {"progress": {"epoch": 1.5, "totalEpochs": 4, "loss": 1.234, "percent": 40,
                                        "eta": "3m20s", "step": 12, "totalSteps": 30},
                           "artifact": {"location": f"/artifacts/{adapter}", "adapterVersion": adapter},
                           "validation": {"evalLoss": 0.9, "perplexity": 2.4, "coherence": 0.9,
                                          "personalityConsistency": 0.95, "perplexityGain": 0.45,
                                          "perplexityGainOverInContext": 0.2, "passed": True, "reasons": []}}}
    cluster.kubectl("patch", "trainingruns", run, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps(progress))
    table = cluster.kubectl("get", "trainingruns", "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PERSONALAI", "PHASE", "EPOCH", "LOSS", "PROGRESS", "ETA", "NODE", "AGE"]
    assert row.split()[:8] == [run, "luke", "Succeeded", "1.5", "1.234", "40", "3m20s", pod["spec"]["nodeName"]]

    pai = wait_for(lambda: (lambda p: p if condition(p, "Trained").get("status") == "True" else None)(
        get_json(cluster, "personalais", "luke", "-n", ns)), timeout=60, message="luke Trained")
    assert condition(pai, "DataReady")["status"] == "True" and pai["status"]["dataAssessment"]["level"] == "optimal"
    assert pai["status"]["observedGeneration"] == pai["metadata"]["generation"]
    pai_table = cluster.kubectl("get", "personalais", "-n", ns).stdout.splitlines()
    assert pai_table[0].split() == ["NAME", "DATA", "PHASE", "ADAPTER", "ENDPOINT", "AGE"]
    assert pai_table[1].split()[:2] == ["luke", "optimal"] and adapter in pai_table[1].split()
    wait_for(lambda: condition(get_json(cluster, "trainingruns", run, "-n", ns), "Validated")["status"] == "True",
             timeout=30, message="the run's Validated condition to follow status.validation")

    reasons = {e["reason"] for e in items(cluster, "events", ns) if e["involvedObject"].get("name") == run}
    assert {"JobCreated", "Running", "Succeeded"} <= reasons

    # Re-applying the same manifests trains nothing new.
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    cluster.kubectl("annotate", "personalais", "luke", "-n", ns, "touched=yes")  # an update event, same spec
    time.sleep(6)  # three resync periods of the test operator: time enough for a duplicate to appear
    assert [r["metadata"]["name"] for r in _runs(cluster, ns)] == [run]
    assert len(items(cluster, "jobs", ns)) == 1

    # A change to the training config makes a new run; the old one stays for history.
    cluster.kubectl("patch", "personalais", "luke", "-n", ns, "--type=merge", "-p", '{"spec":{"training":{"epochs":2}}}')
    runs = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else None)(_runs(cluster, ns)), timeout=60,
                    message="a second run after the config change")
    new = next(r for r in runs if r["metadata"]["name"] != run)
    assert new["spec"]["training"]["epochs"] == 2 and new["spec"]["adapterVersion"].startswith("v2-")
    try:
        wait_for(lambda: _phase(cluster, ns, new["metadata"]["name"]) == "Succeeded", timeout=180,
                 message="the second run to succeed")
    except TimeoutError:
        print(cluster.kubectl("get", "trainingruns,jobs,pods", "-n", ns, "-o", "wide", check=False).stdout)
        print(cluster.kubectl("get", "pods", "-A", "-o", "wide", "--field-selector", "status.phase!=Succeeded",
                              check=False).stdout)
        print(json.dumps(get_json(cluster, "trainingruns", new["metadata"]["name"], "-n", ns).get("status"), indent=1))
        raise


def test_new_data_trains_again(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    first = wait_for(lambda: _runs(cluster, ns), timeout=60, message="the first run")[0]["metadata"]["name"]
    secret = get_json(cluster, "secret", "luke-reflections", "-n", ns)
    text = base64.b64decode(secret["data"]["luke.jsonl"]).decode()
    extra = json.dumps({"question": "What did you fix last week?", "category": "work",
                        "answer": "The screen door, again. " * 10})
    patch = {"stringData": {"luke.jsonl": text + extra + "\n"}}
    cluster.kubectl("patch", "secret", "luke-reflections", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    runs = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else None)(_runs(cluster, ns)), timeout=60,
                    message="a run for the new data (found by the resync, no PersonalAI change)")
    new = next(r for r in runs if r["metadata"]["name"] != first)
    old = next(r for r in runs if r["metadata"]["name"] == first)
    assert new["spec"]["dataVersion"] != old["spec"]["dataVersion"]
    wait_for(lambda: get_json(cluster, "personalais", "luke", "-n", ns)["status"].get("latestTrainingRun")
             == new["metadata"]["name"], timeout=30, message="latestTrainingRun to follow the data")
    pai = get_json(cluster, "personalais", "luke", "-n", ns)
    assert pai["status"]["dataAssessment"]["responses"] == 121
    assert pai["status"]["dataAssessment"]["dataVersion"] == new["spec"]["dataVersion"]
