"""At most three loaded models per RTX 5090 node, enforced by the scheduler through the
personalai.dev/model-slot resource the operator advertises: four PersonalAIs on one node leave the
fourth Pending with Serving=False ModelSlotsExhausted, and a new GPU node lets it start untouched.

GPU sharing mode `shared` (the suite's operator setting): serving pods ask for a slot, not a whole
GPU, so the single simulated GPU of the node never decides the outcome; only the slots do.
"""

import pytest

from devcluster.waiting import wait_for
from serving_cluster_helpers import (
    EXTRA_NODE, MODEL_SLOT, NODE, NODE_PRODUCT, PRODUCT_LABEL, condition, create_personalai, drain_leftovers,
    finish_run, get_json,
    personalai, server_pods, wait_serving,
)

pytestmark = pytest.mark.cluster

NAMES = ("amy", "ben", "cal", "dee")


@pytest.fixture
def one_gpu_node(cluster, serving_operator):
    """Only this suite's node is eligible, and nothing else holds its slots."""
    cluster.delete_node(EXTRA_NODE)
    drain_leftovers(cluster, NODE)
    yield NODE
    cluster.delete_node(EXTRA_NODE)


def _scheduled(cluster, ns, name) -> str | None:
    pods = server_pods(cluster, ns, name)
    return pods[0]["spec"].get("nodeName") if pods else None


def test_fourth_model_waits_for_a_slot_then_starts_on_a_new_node(cluster, one_gpu_node, srv_ns):
    node = wait_for(lambda: (lambda n: n if (n["status"].get("allocatable") or {}).get(MODEL_SLOT) == "3" else None)(
        get_json(cluster, "node", NODE)), timeout=30, message="3 model slots advertised on the GPU node")
    assert node["status"]["capacity"][MODEL_SLOT] == "3"

    for name in NAMES:
        create_personalai(cluster, srv_ns, name)
    for name in NAMES:
        finish_run(cluster, srv_ns, name, timeout=120)
    for name in NAMES[:3]:
        wait_serving(cluster, srv_ns, name, timeout=90)
        assert _scheduled(cluster, srv_ns, name) == NODE

    last = NAMES[3]
    serving = wait_for(lambda: (lambda c: c if c.get("reason") == "ModelSlotsExhausted" else None)(
        condition(personalai(cluster, srv_ns, last), "Serving")), timeout=60, message=f"{last} ModelSlotsExhausted")
    assert serving["status"] == "False"
    assert "1 GPU node(s), 0 free slot(s)" in serving["message"], serving["message"]
    pod = server_pods(cluster, srv_ns, last)[0]
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    assert condition(personalai(cluster, srv_ns, last), "Ready")["status"] == "False"

    # A second RTX 5090 node joins: the operator gives it slots and the scheduler places the waiting pod.
    cluster.add_gpu_node(EXTRA_NODE, gpus=1, labels={PRODUCT_LABEL: NODE_PRODUCT})
    wait_serving(cluster, srv_ns, last, timeout=60)
    assert _scheduled(cluster, srv_ns, last) == EXTRA_NODE
    assert [p["metadata"]["uid"] for p in server_pods(cluster, srv_ns, last)] == [pod["metadata"]["uid"]]
    assert personalai(cluster, srv_ns, last)["status"]["phase"] == "Serving"
