"""The gateway suite's share of the control plane: `gw-*` namespaces and one private simulated RTX 5090
node (see cluster_harness), the real operator, and the gateway as a real process (`python -m
personalai_gateway`, the admin's kubeconfig) watching the suite's two namespaces."""

from __future__ import annotations

import uuid

import pytest
from cluster_harness import Suite
from gateway_helpers import GatewayProcess, delete_namespaces


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(prefix="gw", gpu_product="NVIDIA-GeForce-RTX-5090-GWTEST", nodes=("gw-rtx5090-0",))


@pytest.fixture(scope="module")
def two_namespaces(cluster, suite, operator):
    """One namespace per person (the gateway serves several), deleted with their contents afterwards."""
    names = [f"{suite.prefix}-{who}-{uuid.uuid4().hex[:5]}" for who in ("ann", "bob")]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    delete_namespaces(cluster, names)


@pytest.fixture(scope="module")
def gateway(cluster, two_namespaces, tmp_path_factory):
    # The cpu class: this control plane's trainers run on CPUs.
    settings = {"PERSONALAI_GATEWAY_NAMESPACES": ",".join(two_namespaces), "PERSONALAI_GATEWAY_GPU_CLASS": "cpu"}
    process = GatewayProcess(tmp_path_factory.mktemp("gateway") / "gateway.log",
                             {"KUBECONFIG": str(cluster.kubeconfig)}, settings).start()
    yield process
    process.stop()
