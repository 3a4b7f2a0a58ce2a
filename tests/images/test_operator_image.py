"""The operator image against the local control plane, as the chart's Deployment runs it: it
reconciles the example PersonalAI into a TrainingRun and the trainer's Job."""

from __future__ import annotations

import shutil
import urllib.request

import pytest
from cluster_harness import EXAMPLES, Suite, ensure_nodes, free_port, install_crds, items
from images_harness import Container

from devcluster.waiting import wait_for

pytestmark = pytest.mark.images

SUITE = Suite(prefix="img", gpu_product="NVIDIA-GeForce-RTX-5090-IMGTEST", nodes=("img-rtx5090-0",))
KUBECONFIG = "/etc/personalai/kubeconfig"


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return response.status == 200


def test_operator_container_reconciles_the_example(image_of, cluster, tmp_path):
    install_crds(cluster)
    ensure_nodes(cluster, SUITE)
    # The container's user reads its own copy (the control plane's kubeconfig is root's, mode 0600).
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    shutil.chown(kubeconfig, 10001, 10001)
    liveness = free_port()
    settings = {**SUITE.operator_settings(), "KUBECONFIG": KUBECONFIG,
                "PERSONALAI_LIVENESS_PORT": str(liveness), "PERSONALAI_METRICS_PORT": str(free_port())}
    operator = Container(image_of("operator"), mounts={kubeconfig: KUBECONFIG}, env=settings)
    ns = SUITE.namespace_name("operator-image")
    # The example is there before the operator starts: it finds it on its first listing.
    cluster.kubectl("create", "namespace", ns)
    try:
        cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
        operator.start(tmp_path / "operator.log")
        wait_for(lambda: operator.running() and healthy(liveness), timeout=120,
                 message=f"the operator container's liveness endpoint (log: {tmp_path / 'operator.log'})")
        [run] = wait_for(lambda: items(cluster, "trainingruns", ns), timeout=90, message="the TrainingRun")
        [job] = wait_for(lambda: items(cluster, "jobs", ns, "personalai.dev/personalai=luke"), timeout=90,
                         message="the trainer's Job")
        assert run["spec"]["personalAI"] == "luke"
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["image"] == settings["PERSONALAI_TRAINER_IMAGE"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert operator.running(), (tmp_path / "operator.log").read_text()[-2000:]
    finally:
        # While the operator still runs: it lifts its finalizers, so the namespace can go.
        cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=120s", check=False, timeout=150)
        operator.remove()
