"""The serving suite's share of the control plane: `srv-*` namespaces and one private simulated
RTX 5090 node whose three model slots only this suite's pods count (see cluster_harness). Its
operator serves in shared GPU mode (the harness default): serving pods ask for a model slot, not a
whole GPU."""

from __future__ import annotations

import pytest
from cluster_harness import Suite


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(prefix="srv", gpu_product="NVIDIA-GeForce-RTX-5090-SRVTEST", nodes=("srv-rtx5090-0",),
                 settings={"PERSONALAI_MODEL_SLOTS_PER_NODE": "3", "PERSONALAI_SERVER_IMAGE": "personalai-server:test"})
