"""No free RTX 5090: the run is Queued with the scheduler's own reason, and runs by itself once a
GPU frees."""


import pytest
from cluster_harness import EXAMPLES, condition, get_json, items, take_every_gpu

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_queued_until_a_gpu_frees(cluster, suite, operator, ns):
    take_every_gpu(cluster, suite, ns)

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
    # The run's Event follows its status write, and the PersonalAI may be refreshed from that write first.
    def queued_events() -> list[str]:
        return [e["message"] for e in items(cluster, "events", ns)
                if e["involvedObject"].get("name") == run and e["reason"] == "Queued"]

    try:
        wait_for(lambda: any("Insufficient" in message for message in queued_events()),
                 timeout=30, message="the run's Queued event quoting the scheduler")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; its Queued events: {queued_events()}") from error

    cluster.kubectl("delete", "pod", "hog-0", "-n", ns, "--wait=true", "--grace-period=0", "--force")
    wait_for(lambda: get_json(cluster, "trainingruns", run, "-n", ns)["status"].get("phase") == "Succeeded",
             timeout=120, message="the run to go ahead once a GPU freed")
    tr = get_json(cluster, "trainingruns", run, "-n", ns)
    assert condition(tr, "Queued")["status"] == "False" and tr["status"]["queuedSeconds"] > 0
    assert "personalai_operator_training_queued_seconds_count" in operator.metrics()
