"""The operator suite's share of the control plane: `opt-*` namespaces and two private simulated
RTX 5090 nodes, so occupying "every GPU" here blocks no other suite (see cluster_harness)."""

from __future__ import annotations

import pytest
from cluster_harness import Suite


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(prefix="opt", gpu_product="NVIDIA-GeForce-RTX-5090-OPTEST", nodes=("opt-rtx5090-0", "opt-rtx5090-1"))
