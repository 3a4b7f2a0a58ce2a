"""The `personalai.dev/model-slot` extended resource: how many models one GPU node may load.

The operator advertises it on every node with the GPU product label (capacity from settings,
3 by default) and each serving pod requests one, so the Kubernetes scheduler enforces the cap:
a fourth serving pod on a full node stays Pending. Pure helpers; kube.py applies the patch.
"""

from __future__ import annotations

from typing import Any

from personalai_operator.settings import OperatorSettings

MODEL_SLOT = "personalai.dev/model-slot"


def is_gpu_node(node: dict[str, Any], settings: OperatorSettings) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    return labels.get(settings.gpu_product_label) == settings.gpu_product


def build_slot_patch(node: dict[str, Any], settings: OperatorSettings) -> dict[str, Any] | None:
    """The node-status patch that sets the slot capacity, or None when it is already right."""
    want = str(settings.model_slots_per_node)
    status = node.get("status") or {}
    have = (status.get("capacity") or {}).get(MODEL_SLOT), (status.get("allocatable") or {}).get(MODEL_SLOT)
    if have == (want, want):
        return None
    # Allocatable too: kubelet would mirror capacity into it, simulated nodes have no kubelet.
    return {"status": {"capacity": {MODEL_SLOT: want}, "allocatable": {MODEL_SLOT: want}}}


def slots_summary(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], settings: OperatorSettings) -> dict[str, Any]:
    """GPU nodes, and used and free slots on each: for `ModelSlotsExhausted` messages and metrics."""
    per_node: dict[str, dict[str, int]] = {}
    for node in nodes:
        if not is_gpu_node(node, settings):
            continue
        allocatable = int(((node.get("status") or {}).get("allocatable") or {}).get(MODEL_SLOT, 0))
        per_node[node["metadata"]["name"]] = {"allocatable": allocatable, "used": 0}
    for pod in pods:
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name not in per_node or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod["spec"].get("containers", []):
            requested = ((container.get("resources") or {}).get("requests") or {}).get(MODEL_SLOT)
            per_node[node_name]["used"] += int(requested or 0)
    for counts in per_node.values():
        counts["free"] = max(0, counts["allocatable"] - counts["used"])
    return {"gpuNodes": len(per_node), "freeSlots": sum(c["free"] for c in per_node.values()), "nodes": per_node}


def exhausted_message(summary: dict[str, Any], scheduler_message: str) -> str:
    return (f"no free {MODEL_SLOT}: {summary['gpuNodes']} GPU node(s), {summary['freeSlots']} free slot(s); "
            f"scheduler: {scheduler_message}")
