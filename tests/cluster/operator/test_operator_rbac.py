"""The trainer's per-run ServiceAccount may patch its own TrainingRun's status, and nothing else."""

import json

import kubernetes
import pytest
from cluster_harness import EXAMPLES, get_json, items
from kubernetes.client.rest import ApiException

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def _client_with_token(cluster, token: str) -> kubernetes.client.CustomObjectsApi:
    admin = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)).configuration
    configuration = kubernetes.client.Configuration()
    configuration.host = admin.host
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))


def test_run_token_patches_its_own_status_only(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    other = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "someone-else-1"},
             "spec": {"personalAI": "someone-else", "adapterVersion": "v1-other",
                      "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(other))
    run = wait_for(lambda: [r for r in items(cluster, "trainingruns", ns) if r["metadata"]["name"].startswith("luke-")],
                   timeout=60, message="luke's run")[0]["metadata"]["name"]
    wait_for(lambda: get_json(cluster, "rolebindings", f"{run}-trainer", "-n", ns), timeout=60,
             message="the run's RoleBinding")
    token = cluster.kubectl("create", "token", f"{run}-trainer", "-n", ns, "--duration=10m").stdout.strip()
    api = _client_with_token(cluster, token)
    progress = {"status": {"progress": {"epoch": 0.5, "percent": 12, "loss": 2.5, "eta": "9m"}}}

    api.patch_namespaced_custom_object_status("personalai.dev", "v1alpha1", ns, "trainingruns", run, progress)
    assert get_json(cluster, "trainingruns", run, "-n", ns)["status"]["progress"]["percent"] == 12
    assert api.get_namespaced_custom_object_status("personalai.dev", "v1alpha1", ns, "trainingruns", run)

    with pytest.raises(ApiException) as forbidden:
        api.patch_namespaced_custom_object_status("personalai.dev", "v1alpha1", ns, "trainingruns",
                                                  "someone-else-1", progress)
    assert forbidden.value.status == 403
    with pytest.raises(ApiException) as spec_patch:
        api.patch_namespaced_custom_object("personalai.dev", "v1alpha1", ns, "trainingruns", run,
                                           {"metadata": {"labels": {"x": "y"}}})
    assert spec_patch.value.status == 403
    with pytest.raises(ApiException) as secrets:
        kubernetes.client.CoreV1Api(api.api_client).read_namespaced_secret("luke-reflections", ns)
    assert secrets.value.status == 403
