"""The chart's gateway with exactly the chart's RBAC: the Deployment's env and its ServiceAccount's
token and CA as a pod sees them, run as a process. Its Role (read PersonalAIs, TrainingRuns, EndpointSlices; patch PersonalAIs)
is enough for every route, and it may not read a Secret."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cluster_harness import EXAMPLES, get_json
from gateway_helpers import GatewayProcess, call, create_person, delete_namespaces

pytestmark = pytest.mark.cluster
CHART = str(Path(__file__).resolve().parents[3] / "charts" / "personalai")


def pod_credentials(cluster, root: Path, service_account: str, namespace: str) -> dict[str, str]:
    """The service-account files a pod of `service_account` sees, laid under `root` as the dev node agent
    lays a pod's (PERSONALAI_PATH_PREFIX): the gateway reads them as in any pod."""
    account = root / "var/run/secrets/kubernetes.io/serviceaccount"
    account.mkdir(parents=True)
    token = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=30m").stdout.strip()
    (account / "token").write_text(token)
    (account / "ca.crt").write_bytes(cluster.pki.ca_cert.read_bytes())
    (account / "namespace").write_text(namespace)
    port = cluster.server.rsplit(":", 1)[1]
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port, "PERSONALAI_PATH_PREFIX": str(root),
            "KUBECONFIG": "/nonexistent"}  # nothing but the pod's own credentials


def test_the_charts_gateway_serves_a_person_with_its_own_rbac(cluster, suite, operator, tmp_path):
    suffix = uuid.uuid4().hex[:5]
    release, release_ns, watched = f"gwc-{suffix}", f"gwchart-{suffix}", f"{suite.prefix}-chartw-{suffix}"
    for namespace in (release_ns, watched):
        cluster.kubectl("create", "namespace", namespace)
    gateway = None
    try:
        install = cluster.helm("install", release, CHART, "-n", release_ns, "--set", "crds.install=false",
                               "--set", f"watchNamespaces={{{watched}}}", "--set", "gateway.gpuClass=cpu", check=False)
        assert install.returncode == 0, install.stderr
        sa = f"{release}-gateway"
        deployment = get_json(cluster, "deployment", sa, "-n", release_ns)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == sa
        env = {item["name"]: item["value"] for item in pod["containers"][0]["env"]}
        assert env["PERSONALAI_GATEWAY_NAMESPACES"] == watched
        # The pod is admitted under the restricted Pod Security standard, without a warning.
        cluster.kubectl("label", "namespace", release_ns, "pod-security.kubernetes.io/enforce=restricted",
                        "pod-security.kubernetes.io/warn=restricted")
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gateway-restricted"}, "spec": pod}
        admitted = cluster.kubectl("apply", "--dry-run=server", "-n", release_ns, "-f", "-", input=json.dumps(as_pod),
                                   check=False)
        assert admitted.returncode == 0 and "Warning" not in admitted.stderr, admitted.stderr

        who = f"system:serviceaccount:{release_ns}:{sa}"
        for verb in ("get", "list", "watch"):
            assert cluster.kubectl("auth", "can-i", verb, "secrets", "--as", who, "-n", watched,
                                   check=False).stdout.strip() == "no"
        assert cluster.kubectl("auth", "can-i", "create", "trainingruns.personalai.dev", "--as", who, "-n", watched,
                               check=False).stdout.strip() == "no"

        token = create_person(cluster, watched, "cleo", (EXAMPLES / "reflections" / "luke.jsonl").read_text())
        credentials = pod_credentials(cluster, tmp_path / "pod", sa, release_ns)
        gateway = GatewayProcess(tmp_path / "gateway.log", credentials, env).start()
        assert call(gateway, "GET", "/api/training/start-personal-ai", token).json()["ready"] is True
        started = call(gateway, "POST", "/api/training/start-personal-ai", token, json={"config": {"epochs": 1}})
        assert started.status_code == 200, started.text
        assert get_json(cluster, "personalai", "cleo", "-n", watched)["spec"]["suspend"] is False
        assert call(gateway, "GET", "/api/training/status", token).status_code == 200
        assert call(gateway, "GET", "/api/training/metrics?stream=true", token).status_code == 200
        assert call(gateway, "POST", "/api/ai-echo/chat", token, json={"message": "hi"}).status_code == 503
        log = gateway.log_text()
        assert "403" not in log and "Forbidden" not in log, log[-3000:]
    finally:
        if gateway:
            gateway.stop()
        cluster.helm("uninstall", release, "-n", release_ns, check=False)
        delete_namespaces(cluster, [watched, release_ns])
