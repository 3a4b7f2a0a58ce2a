"""A trainer Job comes with a headless metrics Service that selects exactly its pods and goes with
the run; a hot-GPU report the trainer writes into status.thermal becomes the GpuThrottled condition
and one GpuThrottled Event per episode.

The GPUs are taken first, so the run stays Queued (its pod Pending) while the test plays the trainer.
"""

import json

import pytest
from cluster_harness import EXAMPLES, condition, get_json, items, take_every_gpu

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

HOT = {"throttled": True, "throttling": True, "episodes": 1, "pausedSeconds": 12.5, "lastTemperatureC": 88,
       "limitC": 83}


def _report(cluster, ns, run, thermal):
    """Patch status.thermal as the trainer does: a merge patch on the status subresource."""
    cluster.kubectl("patch", "trainingruns", run, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"thermal": thermal}}))


def _throttled_events(cluster, ns, run):
    return [e for e in items(cluster, "events", ns)
            if e["reason"] == "GpuThrottled" and e["involvedObject"]["name"] == run]


def test_trainer_metrics_service_and_gpu_throttling_in_status(cluster, suite, operator, ns):
    take_every_gpu(cluster, suite, ns)
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    job = wait_for(lambda: items(cluster, "jobs", ns), timeout=60, message="the trainer Job")[0]
    name = job["metadata"]["name"]
    run = get_json(cluster, "trainingruns", name, "-n", ns)

    service = wait_for(lambda: get_json(cluster, "services", name, "-n", ns), timeout=30,
                       message="the trainer metrics Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == 9400 and service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert [ref["uid"] for ref in service["metadata"]["ownerReferences"]] == [run["metadata"]["uid"]]
    assert service["metadata"]["labels"]["personalai.dev/component"] == "trainer"
    selector = ",".join(f"{key}={value}" for key, value in service["spec"]["selector"].items())
    pods = wait_for(lambda: items(cluster, "pods", ns, selector), timeout=60, message="the trainer pod, selected")
    assert {ref["uid"] for pod in pods for ref in pod["metadata"]["ownerReferences"]} == {job["metadata"]["uid"]}

    _report(cluster, ns, name, HOT)
    hot = wait_for(lambda: (lambda r: r if condition(r, "GpuThrottled").get("status") == "True" else None)(
        get_json(cluster, "trainingruns", name, "-n", ns)), timeout=60, message="GpuThrottled True")
    assert hot["status"]["thermal"] == HOT  # the CRD's status schema keeps every field of the report
    assert "88 C, limit 83 C" in condition(hot, "GpuThrottled")["message"]
    wait_for(lambda: _throttled_events(cluster, ns, name), timeout=30, message="a GpuThrottled Event")

    _report(cluster, ns, name, {**HOT, "pausedSeconds": 30.0})  # the same episode, still paused
    _report(cluster, ns, name, {**HOT, "throttling": False, "pausedSeconds": 40.0, "lastTemperatureC": 76})
    wait_for(lambda: (lambda r: r if condition(r, "GpuThrottled").get("status") == "False" else None)(
        get_json(cluster, "trainingruns", name, "-n", ns)), timeout=60, message="GpuThrottled False once cooled")
    events = _throttled_events(cluster, ns, name)
    assert len(events) == 1 and events[0].get("count", 1) == 1, events  # one Event for the one episode

    bad = cluster.kubectl("patch", "trainingruns", name, "-n", ns, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": {"thermal": {"lastTemperatureC": 900}}}), check=False)
    assert bad.returncode != 0 and "lastTemperatureC" in bad.stderr
