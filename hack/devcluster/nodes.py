"""Node manifests for simulated nodes (pure builders).

kwok manages every node carrying the `kwok.x-k8s.io/node: fake` annotation: it marks it Ready, keeps
its lease, and plays the lifecycle of the pods bound to it (Running, Ready; pods of a Job complete).
"""

from __future__ import annotations

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
RTX_5090 = "NVIDIA-GeForce-RTX-5090"
RTX_5090_MEMORY_MIB = "32607"
# The taint GPU clusters usually carry, so only pods that tolerate it land on GPU nodes.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def build_node(name: str, *, gpus: int = 0, gpu_product: str = RTX_5090, cpu: str = "32", memory: str = "128Gi",
               labels: dict[str, str] | None = None, extra_capacity: dict[str, str] | None = None,
               simulated: bool = True) -> dict:
    """A Node object: a GPU node when `gpus` > 0 (product label, capacity, taint), else a CPU node."""
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok" if simulated else "personalai-dev-node-agent",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "500Gi"}
    taints = []
    if gpus:
        node_labels |= {GPU_PRODUCT_LABEL: gpu_product, "nvidia.com/gpu.count": str(gpus),
                        "nvidia.com/gpu.memory": RTX_5090_MEMORY_MIB, "nvidia.com/gpu.present": "true"}
        capacity["nvidia.com/gpu"] = str(gpus)
        taints.append(dict(GPU_TAINT))
    node_labels |= labels or {}
    capacity |= extra_capacity or {}
    annotations = {KWOK_ANNOTATION: "fake"} if simulated else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": annotations},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": dict(capacity),
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                                "kubeletVersion": "fake", "containerRuntimeVersion": "fake"}},
    }


def default_nodes(gpu_nodes: int = 2, cpu_nodes: int = 1) -> list[dict]:
    """The default shape: two RTX 5090 nodes with one GPU each, and one CPU node."""
    return ([build_node(f"rtx5090-{i}", gpus=1) for i in range(gpu_nodes)]
            + [build_node(f"cpu-{i}") for i in range(cpu_nodes)])
