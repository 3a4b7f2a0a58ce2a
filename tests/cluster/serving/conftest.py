"""Fixtures for the serving cluster tests: the CRDs, this suite's own simulated RTX 5090 node, one
operator process for the session (shared GPU mode: serving pods ask for a model slot, no whole GPU),
and fresh `srv-*` namespaces it watches. See serving_cluster_helpers for the isolation scheme.
"""

from __future__ import annotations

import re
import uuid

import pytest
from serving_cluster_helpers import (
    NAMESPACE_PATTERN,
    NODE_PRODUCT,
    REPO,
    RESYNC_SECONDS,
    OperatorSubprocess,
    ensure_node,
)

from devcluster.waiting import wait_for

OPERATOR_SETTINGS = {
    "PERSONALAI_NAMESPACES": NAMESPACE_PATTERN,
    "PERSONALAI_GPU_PRODUCT": NODE_PRODUCT,
    "PERSONALAI_SERVING_GPU_SHARING": "shared",
    "PERSONALAI_MODEL_SLOTS_PER_NODE": "3",
    "PERSONALAI_RESYNC_SECONDS": str(RESYNC_SECONDS),
    "PERSONALAI_TRAINER_CPU": "1",
    "PERSONALAI_TRAINER_MEMORY": "1Gi",
    "PERSONALAI_TRAINER_IMAGE": "personalai-trainer:test",
    "PERSONALAI_SERVER_IMAGE": "personalai-server:test",
}


@pytest.fixture(scope="session")
def serving_crds(cluster):
    # The same way the operator suite installs them (kubectl apply is idempotent, so either order works);
    # the chart test installs the chart with crds.install=false for that reason.
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s",
                    "crd/personalais.personalai.dev", "crd/trainingruns.personalai.dev")
    wait_for(lambda: cluster.kubectl("get", "trainingruns", "-A", check=False).returncode == 0, timeout=30,
             message="the TrainingRun API to be served")
    return cluster


# Per module: an operator left running after its tests would keep the API server busy for the rest.
@pytest.fixture(scope="module")
def serving_operator(serving_crds, cluster, tmp_path_factory):
    ensure_node(cluster)
    process = OperatorSubprocess(tmp_path_factory.mktemp("serving-operator") / "operator.log", cluster.kubeconfig,
                                 OPERATOR_SETTINGS).start()
    yield process
    process.stop()


@pytest.fixture
def srv_ns(cluster, serving_operator, request):
    """A fresh namespace the serving operator watches; deleted (with everything in it) afterwards."""
    ensure_node(cluster)
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:30].strip("-")
    name = f"srv-{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
