"""The local control plane is a real Kubernetes: the scheduler, the garbage collector, RBAC and helm
decide what happens here, not test code."""

from __future__ import annotations

import json
import textwrap

import pytest

from devcluster import binaries
from devcluster.nodes import GPU_PRODUCT_LABEL, RTX_5090
from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
RTX_5090_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [RTX_5090]}]}]}}}


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def test_versions_are_the_pinned_ones(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    pinned = binaries.versions()["kubernetes"]
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["gitVersion"] == pinned
    assert cluster.helm("version", "--short").stdout.startswith(binaries.versions()["helm"])


def test_rtx_5090_nodes_are_listed_with_their_gpus(cluster):
    out = cluster.kubectl("get", "nodes", "-L", GPU_PRODUCT_LABEL).stdout
    gpu_lines = [line for line in out.splitlines() if RTX_5090 in line]
    assert len(gpu_lines) >= 2 and all(" Ready " in line for line in gpu_lines)
    node = get_json(cluster, "node", "rtx5090-0")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_gpu_job_lands_on_an_rtx_5090_node_and_completes(cluster, namespace):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "gpu-job", "namespace": namespace},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", "tolerations": [GPU_TOLERATION], "affinity": RTX_5090_AFFINITY,
               "containers": [{"name": "train", "image": "trainer:dev",
                               "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def job_complete():
        status = get_json(cluster, "job", "gpu-job", "-n", namespace).get("status", {})
        return any(c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions", []))

    wait_for(job_complete, timeout=90, message="the GPU Job to complete")
    pod = get_json(cluster, "pods", "-n", namespace, "-l", "job-name=gpu-job")["items"][0]
    node = get_json(cluster, "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == RTX_5090
    assert pod["status"]["phase"] == "Succeeded"


def test_pod_wanting_more_gpus_than_any_node_stays_pending(cluster, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy", "namespace": namespace},
           "spec": {"tolerations": [GPU_TOLERATION], "containers": [
               {"name": "c", "image": "trainer:dev", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def failed_scheduling_event():
        events = get_json(cluster, "events", "-n", namespace, "--field-selector", "involvedObject.name=greedy")
        return [e for e in events["items"] if e["reason"] == "FailedScheduling"]

    events = wait_for(failed_scheduling_event, timeout=60, message="a FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in events[0]["message"]
    assert get_json(cluster, "pod", "greedy", "-n", namespace)["status"]["phase"] == "Pending"


def test_deleting_an_owner_garbage_collects_its_dependents(cluster, namespace):
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get_json(cluster, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "dependent", "namespace": namespace,
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
             timeout=60, message="the garbage collector to delete the dependent")


def test_service_account_tokens_and_rbac_work(cluster, namespace):
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl("create", "role", "read-cm", "--verb=get", "--resource=configmaps", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "read-cm", "--role=read-cm", f"--serviceaccount={namespace}:reader",
                    "-n", namespace)
    token = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    assert token.count(".") == 2
    cluster.kubectl("create", "configmap", "visible", "-n", namespace)

    def reader(*args):
        return cluster.kubectl("--kubeconfig=/dev/null", f"--server={cluster.server}",
                               f"--certificate-authority={cluster.pki.ca_cert}", "--token", token,
                               *args, "-n", namespace, check=False)

    wait_for(lambda: reader("get", "configmap", "visible").returncode == 0, timeout=30, message="RBAC to allow get")
    denied = reader("delete", "configmap", "visible")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_helm_installs_and_uninstalls_a_chart(cluster, namespace, tmp_path):
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hi\n")
    (chart / "templates" / "cm.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: {{ .Release.Name }}-greeting}
        data: {greeting: {{ .Values.greeting | quote }}}
        """))
    cluster.helm("install", "hello", str(chart), "-n", namespace, "--set", "greeting=hello", "--wait", "--timeout", "60s")
    assert get_json(cluster, "configmap", "hello-greeting", "-n", namespace)["data"] == {"greeting": "hello"}
    cluster.helm("uninstall", "hello", "-n", namespace, "--wait")
    assert cluster.kubectl("get", "configmap", "hello-greeting", "-n", namespace, check=False).returncode != 0
    assert "hello" not in cluster.helm("list", "-n", namespace, "-q").stdout
