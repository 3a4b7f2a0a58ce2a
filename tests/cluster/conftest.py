"""Fixtures of the operator-driven cluster suites, on cluster_harness. A suite's conftest defines a
module-scoped `suite` fixture (its `Suite`: namespace prefix, GPU product and nodes, operator
settings); `operator`, `gpu_nodes` and `ns` then work for that suite alone.

Nothing here that depends on `suite` is session-scoped: a session fixture would be made once, for
whichever suite asked first, and handed unchanged to the next.
"""

from __future__ import annotations

import pytest
from cluster_harness import OperatorProcess, ensure_nodes, install_crds


@pytest.fixture(scope="session")
def crds(cluster):
    install_crds(cluster)


# Per module: an operator left running after its tests would keep the API server busy for the rest.
@pytest.fixture(scope="module")
def operator(crds, cluster, suite, tmp_path_factory):
    ensure_nodes(cluster, suite)
    log_path = tmp_path_factory.mktemp(f"{suite.prefix}-operator") / "operator.log"
    process = OperatorProcess(log_path, cluster.kubeconfig, suite.operator_settings()).start()
    yield process
    process.stop()


@pytest.fixture
def gpu_nodes(cluster, suite):
    """The suite's nodes, present and free of stale pods (checked again for each test)."""
    ensure_nodes(cluster, suite)
    return suite.nodes


@pytest.fixture
def ns(cluster, suite, operator, gpu_nodes, request):
    """A fresh namespace the suite's running operator watches, deleted (with its contents) afterwards."""
    name = suite.namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
