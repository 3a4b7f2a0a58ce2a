"""The chart's gateway as `helm template` renders it: least privilege per watched namespace (nothing
on Secrets, nothing cluster-wide), the restricted pod, and env the gateway's own settings parse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster import binaries
from devcluster.agent.images import build_command
from personalai_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit
CHART = Path(__file__).resolve().parents[3] / "charts" / "personalai"
WATCHED = ("family", "friends")


def render(*args: str) -> list[dict]:
    out = subprocess.run([str(binaries.build() / "helm"), "template", "r", str(CHART), "-n", "personalai-system",
                          "--set", "watchNamespaces={" + ",".join(WATCHED) + "}", *args],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc and doc["metadata"]["name"] == "r-gateway"]


@pytest.fixture(scope="module")
def gateway_docs() -> list[dict]:
    return render()


def test_the_gateway_reads_people_and_runs_and_patches_only_personalais(gateway_docs):
    roles = [doc for doc in gateway_docs if doc["kind"] == "Role"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted(WATCHED)
    for role in roles:
        grants = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
                  for resource in rule["resources"] for verb in rule["verbs"]}
        reads = {(group, resource, verb) for group, resource in (("personalai.dev", "personalais"),
                                                                 ("personalai.dev", "trainingruns"),
                                                                 ("discovery.k8s.io", "endpointslices"))
                 for verb in ("get", "list", "watch")}
        assert grants == reads | {("personalai.dev", "personalais", "patch")}
    assert not [doc for doc in gateway_docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    bindings = [doc for doc in gateway_docs if doc["kind"] == "RoleBinding"]
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "r-gateway", "namespace": "personalai-system"}]
               for b in bindings) and len(bindings) == len(WATCHED)


def test_the_gateway_pod_is_restricted_and_its_env_parses_as_its_settings(gateway_docs):
    (deployment,) = [doc for doc in gateway_docs if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"]["memory"]
    settings = GatewaySettings.from_env({item["name"]: item["value"] for item in container["env"]})
    assert settings.namespaces == list(WATCHED) and settings.gpu_class == "rtx-5090"
    assert settings.throughput_tokens_per_second == {"rtx-5090": 2500, "cpu": 90}
    (service,) = [doc for doc in gateway_docs if doc["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_dev_node_agent_runs_the_charts_gateway_pod_as_the_gateway_program(gateway_docs):
    (deployment,) = [doc for doc in gateway_docs if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert build_command(container, "/venv/bin/python") == ["/venv/bin/python", "-m", "personalai_gateway"]
    assert build_command({"image": container["image"]}, "/venv/bin/python")[1:] == ["-m", "personalai_gateway"]


def test_gateway_enabled_false_renders_no_gateway():
    assert render("--set", "gateway.enabled=false") == []


def test_a_throughput_of_zero_is_refused_at_install():
    with pytest.raises(subprocess.CalledProcessError) as refused:
        render("--set", "gateway.throughputTokensPerSecond.cpu=0")
    assert "throughputTokensPerSecond" in refused.value.stderr
