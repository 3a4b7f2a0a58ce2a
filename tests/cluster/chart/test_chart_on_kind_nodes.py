"""The chart's pods on kind's nodes, placed by the real scheduler.

The nodes are made from kind-config.yaml as kind would make them: the control plane with the taint
kubeadm gives it (kind keeps it when there are workers), each worker with the labels and taints the
file gives it. They are simulated (kwok) and carry one more label, this test's, which the release's
nodeSelector names so that no other node of the shared control plane can take its pods: where a pod
may go among kind's nodes is then decided by taints and tolerations alone, as on kind. The control:
the same nodes without the plain worker (kind-config.yaml before it had one) leave the operator
Pending, which is what a review found.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from devcluster.nodes import build_node
from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[3]
KIND_CONFIG = REPO / "kind-config.yaml"
KIND_VALUES = REPO / "charts" / "personalai" / "values-kind.yaml"
SHAPE_LABEL = "personalai.dev/test-kind-shape"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def kind_nodes(config: dict, shape: str) -> list[dict]:
    """Simulated Nodes shaped like those `kind create cluster --config` makes from `config`."""
    made = []
    for index, node in enumerate(config["nodes"]):
        name = f"kind-{shape}-{node['role']}-{index}"
        labels = {**node.get("labels", {}), SHAPE_LABEL: shape}
        taints = [dict(CONTROL_PLANE_TAINT)] if node["role"] == "control-plane" else []
        if node["role"] == "control-plane":
            labels["node-role.kubernetes.io/control-plane"] = ""
        for patch in node.get("kubeadmConfigPatches", []):
            taints += yaml.safe_load(patch).get("nodeRegistration", {}).get("taints", [])
        simulated = build_node(name, labels=labels)
        simulated["spec"]["taints"] = taints
        made.append(simulated)
    return made


def pods_of(cluster, namespace: str, component: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}",
                          "-o", "yaml").stdout
    return yaml.safe_load(out)["items"]


def scheduled_on(cluster, namespace: str, component: str) -> str | None:
    pods = pods_of(cluster, namespace, component)
    return pods[0]["spec"].get("nodeName") if pods else None


def unschedulable(cluster, namespace: str, component: str) -> str | None:
    """The scheduler's message when it found no node for the component's pod, else None."""
    for pod in pods_of(cluster, namespace, component):
        for condition in (pod.get("status") or {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return condition.get("message", "")
    return None


@pytest.fixture
def kind_shaped(cluster):
    """kind_shaped(config) -> the shape label of simulated nodes made from `config`, removed afterwards."""
    made: list[str] = []

    def make(config: dict) -> str:
        shape = uuid.uuid4().hex[:6]
        for node in kind_nodes(config, shape):
            cluster.apply_node(node)
            made.append(node["metadata"]["name"])
        wait_for(lambda: all(cluster.node_ready(name) for name in made), timeout=60, message="the kind-shaped nodes")
        return shape

    yield make
    for name in made:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


def install_on(release, shape: str, watched: str) -> None:
    # --set-string: a label value is a string even when the random shape happens to read as a number
    release.helm("install", "-f", str(KIND_VALUES), "--set", "crds.install=false",
                 "--set", f"watchNamespaces={{{watched}}}",
                 "--set-string", f"operator.nodeSelector.personalai\\.dev/test-kind-shape={shape}",
                 "--set-string", f"gateway.nodeSelector.personalai\\.dev/test-kind-shape={shape}")


def test_the_operator_and_gateway_land_on_kinds_plain_worker(cluster, crds, release, new_namespace, kind_shaped):
    config = yaml.safe_load(KIND_CONFIG.read_text())
    shape = kind_shaped(config)
    install_on(release, shape, new_namespace("people"))
    for component in ("operator", "gateway"):
        node = wait_for(lambda part=component: scheduled_on(cluster, release.namespace, part), timeout=60,
                        message=f"the {component} pod to be scheduled on kind's nodes")
        assert node == f"kind-{shape}-worker-1", f"the {component} belongs on the plain worker, not on {node}"
    deployment = yaml.safe_load(cluster.kubectl("get", "deployment", f"{release.name}-operator", "-n",
                                                release.namespace, "-o", "yaml").stdout)
    env = {item["name"]: item.get("value") for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PERSONALAI_MODEL_CACHE_ACCESS_MODE"] == "ReadWriteOnce", "kind's local-path binds ReadWriteOnce only"


def test_without_a_plain_worker_the_operator_stays_pending(cluster, crds, release, new_namespace, kind_shaped):
    config = yaml.safe_load(KIND_CONFIG.read_text())
    config["nodes"] = [node for node in config["nodes"] if node["role"] == "control-plane" or node.get("labels")]
    shape = kind_shaped(config)
    install_on(release, shape, new_namespace("people"))
    message = wait_for(lambda: unschedulable(cluster, release.namespace, "operator"), timeout=60,
                       message="the scheduler to find no node for the operator")
    assert "untolerated taint" in message, message
