"""No free RTX 5090: the run is Queued with the scheduler's own reason, and runs by itself once a
GPU frees."""

import json

import pytest
from cluster_harness import EXAMPLES, condition, get_json, items

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def _gpu_hog(name: str, gpu_product: str) -> str:
    """A pod holding one GPU of a node with that product (not owned by a Job, so kwok keeps it Running)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "hog", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"nvidia.com/gpu.product": gpu_product},
        },
    })


def test_queued_until_a_gpu_frees(cluster, suite, operator, ns):
    for i in range(len(suite.nodes)):
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=_gpu_hog(f"hog-{i}", suite.gpu_product))
    wait_for(lambda: all(p["spec"].get("nodeName") for p in items(cluster, "pods", ns)) and
             len(items(cluster, "pods", ns)) == len(suite.nodes), timeout=120,
             message="both GPUs taken (a run left by an earlier test may hold one for a few seconds)")

    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    run = wait_for(lambda: items(cluster, "trainingruns", ns), timeout=60, message="the run")[0]["metadata"]["name"]

    def queued():
        tr = get_json(cluster, "trainingruns", run, "-n", ns)
        return tr if (tr.get("status") or {}).get("phase") == "Queued" and "Insufficient" in \
            condition(tr, "Queued").get("message", "") else None

    tr = wait_for(queued, timeout=60, message="the run Queued with the scheduler's reason")
    queued_condition = condition(tr, "Queued")
    assert queued_condition["status"] == "True" and queued_condition["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in queued_condition["message"]
    assert "nodes are available" in tr["status"]["message"]
    pai = wait_for(lambda: (lambda p: p if condition(p, "Trained").get("reason") == "Queued" else None)(
        get_json(cluster, "personalais", "luke", "-n", ns)), timeout=30, message="luke's Trained=Queued")
    assert "Insufficient nvidia.com/gpu" in condition(pai, "Trained")["message"]
    events = [e for e in items(cluster, "events", ns) if e["involvedObject"].get("name") == run]
    assert any(e["reason"] == "Queued" and "Insufficient" in e["message"] for e in events)

    cluster.kubectl("delete", "pod", "hog-0", "-n", ns, "--wait=true", "--grace-period=0", "--force")
    wait_for(lambda: get_json(cluster, "trainingruns", run, "-n", ns)["status"].get("phase") == "Succeeded",
             timeout=120, message="the run to go ahead once a GPU freed")
    tr = get_json(cluster, "trainingruns", run, "-n", ns)
    assert condition(tr, "Queued")["status"] == "False" and tr["status"]["queuedSeconds"] > 0
    assert "personalai_operator_training_queued_seconds_count" in operator.metrics()
