"""At most three loaded models per RTX 5090 node, enforced by the scheduler through the
personalai.dev/model-slot resource the operator advertises: four PersonalAIs on one node leave the
fourth Pending with Serving=False ModelSlotsExhausted; a deleted PersonalAI or a new GPU node lets
the waiting one start with nobody touching it.

GPU sharing mode `shared` (the suite's operator setting): serving pods ask for a slot, not a whole
GPU, so the single simulated GPU of the node never decides the outcome; only the slots do.
"""

import pytest
from cluster_harness import condition, get_json
from serving_cluster_helpers import (
    MODEL_SLOT,
    create_personalai,
    drain_leftovers,
    finish_run,
    personalai,
    server_pods,
    wait_serving,
)

from devcluster.nodes import GPU_PRODUCT_LABEL
from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

NAMES = ("amy", "ben", "cal", "dee")
EXTRA_NODE = "srv-rtx5090-extra"  # a second node of the suite's GPU product, joining mid-test


@pytest.fixture
def one_gpu_node(cluster, suite, operator):
    """Only this suite's node is eligible, and nothing else holds its slots."""
    (node,) = suite.nodes
    cluster.delete_node(EXTRA_NODE)
    drain_leftovers(cluster, node)
    yield node
    cluster.delete_node(EXTRA_NODE)


def _scheduled(cluster, ns, name) -> str | None:
    pods = server_pods(cluster, ns, name)
    return pods[0]["spec"].get("nodeName") if pods else None


def _wait_exhausted(cluster, ns, name) -> dict:
    """The PersonalAI says why it is not serving, with the numbers; its pod is Pending. Returns the pod."""
    serving = wait_for(lambda: (lambda c: c if c.get("reason") == "ModelSlotsExhausted" else None)(
        condition(personalai(cluster, ns, name), "Serving")), timeout=60, message=f"{name} ModelSlotsExhausted")
    assert serving["status"] == "False"
    assert "1 GPU node(s), 0 free slot(s)" in serving["message"], serving["message"]
    assert condition(personalai(cluster, ns, name), "Ready")["status"] == "False"
    pods = server_pods(cluster, ns, name)
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Pending" and not pods[0]["spec"].get("nodeName")
    return pods[0]


def test_fourth_model_waits_for_a_slot_then_starts_when_one_frees_or_a_node_joins(cluster, suite, one_gpu_node, ns):
    node = wait_for(lambda: (lambda n: n if (n["status"].get("allocatable") or {}).get(MODEL_SLOT) == "3" else None)(
        get_json(cluster, "node", one_gpu_node)), timeout=30, message="3 model slots advertised on the GPU node")
    assert node["status"]["capacity"][MODEL_SLOT] == "3"

    for name in NAMES:
        create_personalai(cluster, ns, name)
    for name in NAMES:
        finish_run(cluster, ns, name, timeout=120)
    for name in NAMES[:3]:
        wait_serving(cluster, ns, name, timeout=90)
        assert _scheduled(cluster, ns, name) == one_gpu_node

    waiting = NAMES[3]
    pod = _wait_exhausted(cluster, ns, waiting)

    # Someone deletes their PersonalAI: its server goes, and the waiting one starts in the freed slot.
    cluster.kubectl("delete", "personalais", NAMES[0], "-n", ns, "--wait=false")
    wait_serving(cluster, ns, waiting, timeout=90)
    assert _scheduled(cluster, ns, waiting) == one_gpu_node
    assert [p["metadata"]["uid"] for p in server_pods(cluster, ns, waiting)] == [pod["metadata"]["uid"]]

    # A fifth PersonalAI waits again; a second RTX 5090 node joins, the operator gives it slots, and
    # the scheduler places the waiting pod there, with nobody touching the PersonalAI.
    create_personalai(cluster, ns, "eve")
    finish_run(cluster, ns, "eve", timeout=120)
    pod = _wait_exhausted(cluster, ns, "eve")
    cluster.add_gpu_node(EXTRA_NODE, gpus=1, labels={GPU_PRODUCT_LABEL: suite.gpu_product})
    wait_serving(cluster, ns, "eve", timeout=60)
    assert _scheduled(cluster, ns, "eve") == EXTRA_NODE
    assert get_json(cluster, "node", EXTRA_NODE)["status"]["allocatable"][MODEL_SLOT] == "3"
    assert [p["metadata"]["uid"] for p in server_pods(cluster, ns, "eve")] == [pod["metadata"]["uid"]]
    assert personalai(cluster, ns, "eve")["status"]["phase"] == "Serving"
