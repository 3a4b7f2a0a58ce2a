"""Pods bound to the development node agent's node run as local processes, and Kubernetes sees them
as kubelet would report them: Jobs complete, failures carry exit codes, probes gate Ready, programs
reach the API with their own ServiceAccount token, and deleting a pod stops its process."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
IMAGE = "python:3.11-slim"


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster, manifest: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def agent_state(cluster, node: str) -> Path:
    return cluster.agent_state_dir(node)


def bare_pod(namespace: str, name: str, node: str, command: list[str], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "tolerations": [GPU_TOLERATION], "restartPolicy": "Never",
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "main", "image": IMAGE, "command": command}], **spec}}


def pod_phase(cluster, namespace: str, name: str) -> str:
    return get_json(cluster, "pod", name, "-n", namespace).get("status", {}).get("phase", "")


def container_log(pod: dict, container: str = "main") -> str:
    return (Path(pod["metadata"]["annotations"]["personalai.dev/dev-agent-logs"]) / f"{container}.log").read_text()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


JOB_PROGRAM = """
import json, os
from personalai_contracts.paths import resolve
secret = resolve('/etc/token/api/token.txt')
result = {'greeting': resolve('/etc/settings/greeting').read_text(),
          'secretMatches': secret.read_text() == 's3cret',
          'secretMode': oct(secret.stat().st_mode & 0o777),
          'node': os.environ['NODE_NAME']}
resolve('/work/result.json').write_text(json.dumps(result))
"""


def test_gpu_job_reads_config_and_secret_and_writes_to_its_claim(cluster, namespace, node_agent):
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=greeting=hello")
    cluster.kubectl("create", "secret", "generic", "token", "-n", namespace, "--from-literal=value=s3cret")
    apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "work", "namespace": namespace},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}})
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node_agent]}]}]}}}
    apply(cluster, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "namespace": namespace},
                    "spec": {"backoffLimit": 0, "template": {"spec": {
                        "restartPolicy": "Never", "tolerations": [GPU_TOLERATION], "affinity": affinity,
                        "containers": [{"name": "main", "image": IMAGE, "command": ["python", "-c", JOB_PROGRAM],
                                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                        "volumeMounts": [{"name": "settings", "mountPath": "/etc/settings"},
                                                         {"name": "token", "mountPath": "/etc/token"},
                                                         {"name": "work", "mountPath": "/work"}]}],
                        "volumes": [{"name": "settings", "configMap": {"name": "settings"}},
                                    {"name": "token", "secret": {"secretName": "token", "items": [
                                        {"key": "value", "path": "api/token.txt"}]}},
                                    {"name": "work", "persistentVolumeClaim": {"claimName": "work"}}]}}}})

    def job_complete():
        conditions = get_json(cluster, "job", "train", "-n", namespace).get("status", {}).get("conditions", [])
        failed = [c for c in conditions if c["type"] == "Failed" and c["status"] == "True"]
        assert not failed, f"the Job failed: {failed}"
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(job_complete, timeout=90, message="the Job to complete on the agent's node")
    pod = get_json(cluster, "pods", "-n", namespace, "-l", "job-name=train")["items"][0]
    assert pod["spec"]["nodeName"] == node_agent
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    claim = agent_state(cluster, node_agent) / "claims" / namespace / "work"
    result = json.loads((claim / "result.json").read_text())
    assert result == {"greeting": "hello", "secretMatches": True, "secretMode": "0o444", "node": node_agent}

    cluster.kubectl("delete", "job", "train", "-n", namespace, "--cascade=foreground", "--wait=true", timeout=60)
    cluster.kubectl("delete", "pvc", "work", "-n", namespace, "--wait=false")
    wait_for(lambda: not claim.exists(), timeout=30, message="the claim's folder to go with the PVC")


def test_failing_container_fails_the_pod_with_its_exit_code(cluster, namespace, node_agent):
    apply(cluster, bare_pod(namespace, "fails", node_agent, ["python", "-c", "import sys; sys.exit(3)"]))
    wait_for(lambda: pod_phase(cluster, namespace, "fails") == "Failed", timeout=30, message="phase Failed")
    terminated = get_json(cluster, "pod", "fails", "-n", namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"


def test_crashing_container_is_restarted_with_backoff(cluster, namespace, node_agent):
    pod = bare_pod(namespace, "crashes", node_agent, ["python", "-c", "import sys; sys.exit(1)"])
    pod["spec"]["restartPolicy"] = "Always"
    apply(cluster, pod)

    def restarted():
        status = get_json(cluster, "pod", "crashes", "-n", namespace)["status"]["containerStatuses"][0]
        return status if status["restartCount"] >= 1 and status["lastState"].get("terminated") else None

    status = wait_for(restarted, timeout=30, message="a restart")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    wait_for(lambda: get_json(cluster, "pod", "crashes", "-n", namespace)["status"]["containerStatuses"][0]["state"]
             .get("waiting", {}).get("reason") == "CrashLoopBackOff", timeout=30, message="CrashLoopBackOff")
    assert pod_phase(cluster, namespace, "crashes") == "Running"


def test_unmapped_image_waits_with_a_clear_reason(cluster, namespace, node_agent):
    pod = bare_pod(namespace, "nginx", node_agent, [])
    pod["spec"]["containers"][0] = {"name": "main", "image": "nginx:1.27"}
    apply(cluster, pod)

    def waiting():
        statuses = get_json(cluster, "pod", "nginx", "-n", namespace).get("status", {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason") == "ImageNotMappedForDevAgent" and statuses[0]

    status = wait_for(waiting, timeout=30, message="the ImageNotMappedForDevAgent reason")
    assert "nginx:1.27" in status["state"]["waiting"]["message"]
    assert pod_phase(cluster, namespace, "nginx") == "Pending"


def test_deployment_pods_become_ready_and_answer_on_their_own_pod_ips(cluster, namespace, node_agent):
    labels = {"app": "web"}
    apply(cluster, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
                    "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                        "metadata": {"labels": labels},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": node_agent}, "tolerations": [GPU_TOLERATION],
                                 "terminationGracePeriodSeconds": 5,
                                 "containers": [{"name": "main", "image": IMAGE, "ports": [{"containerPort": 8080, "name": "http"}],
                                                 "command": ["python", "-m", "http.server", "8080",
                                                             "--bind", "$(PERSONALAI_LISTEN_HOST)"],
                                                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                                                    "periodSeconds": 1}}]}}}})

    def deployment_available():
        return get_json(cluster, "deployment", "web", "-n", namespace).get("status", {}).get("readyReplicas") == 2

    wait_for(deployment_available, timeout=60, message="both replicas Ready")
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
    addresses = {p["status"]["podIP"] for p in pods}
    prefix = cluster.pod_address_prefix + "."
    assert len(addresses) == 2 and all(a.startswith(prefix) and a != "127.0.0.1" for a in addresses)
    for address in addresses:
        with urllib.request.urlopen(f"http://{address}:8080/", timeout=5) as response:
            assert response.status == 200


SELF_LOOKUP_PROGRAM = """
import json, os, ssl, urllib.request
from personalai_contracts.paths import resolve
account = resolve('/var/run/secrets/kubernetes.io/serviceaccount')
context = ssl.create_default_context(cafile=str(account / 'ca.crt'))
url = 'https://{}:{}/api/v1/namespaces/{}/pods/{}'.format(os.environ['KUBERNETES_SERVICE_HOST'],
    os.environ['KUBERNETES_SERVICE_PORT'], (account / 'namespace').read_text(), os.environ['POD_NAME'])
request = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + (account / 'token').read_text()})
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    me = json.load(response)
assert me['metadata']['uid'] == os.environ['POD_UID'], 'a different pod'
print('found myself on', me['spec']['nodeName'])
"""


def test_program_calls_the_api_with_its_service_account_token(cluster, namespace, node_agent):
    cluster.kubectl("create", "role", "pod-reader", "--verb=get", "--resource=pods", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader",
                    f"--serviceaccount={namespace}:default", "-n", namespace)
    pod = bare_pod(namespace, "whoami", node_agent, ["python", "-c", SELF_LOOKUP_PROGRAM])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
             timeout=30, message="the default ServiceAccount")
    apply(cluster, pod)
    wait_for(lambda: pod_phase(cluster, namespace, "whoami") in ("Succeeded", "Failed"), timeout=60, message="the pod to finish")
    pod = get_json(cluster, "pod", "whoami", "-n", namespace)
    log = container_log(pod)
    assert pod["status"]["phase"] == "Succeeded", log
    assert f"found myself on {node_agent}" in log


def test_config_map_updates_reach_a_running_pod_and_deletion_stops_it(cluster, namespace, node_agent):
    cluster.kubectl("create", "configmap", "live", "-n", namespace, "--from-literal=mode=first")
    # SIGTERM is ignored, so only the SIGKILL after the grace period can stop it.
    program = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    pod = bare_pod(namespace, "sleeper", node_agent, ["python", "-c", program],
                   volumes=[{"name": "live", "configMap": {"name": "live"}}], terminationGracePeriodSeconds=2)
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "live", "mountPath": "/etc/live"}]
    apply(cluster, pod)
    wait_for(lambda: pod_phase(cluster, namespace, "sleeper") == "Running", timeout=30, message="Running")
    pod = get_json(cluster, "pod", "sleeper", "-n", namespace)
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("devagent://"))
    assert pid_alive(pid)
    mode_file = agent_state(cluster, node_agent) / "pods" / pod["metadata"]["uid"] / "root" / "etc" / "live" / "mode"
    assert mode_file.read_text() == "first"

    cluster.kubectl("patch", "configmap", "live", "-n", namespace, "-p", json.dumps({"data": {"mode": "second"}}))
    wait_for(lambda: mode_file.read_text() == "second", timeout=15, message="the updated ConfigMap in the pod")

    cluster.kubectl("delete", "pod", "sleeper", "-n", namespace, "--wait=false")
    wait_for(lambda: not pid_alive(pid), timeout=20, message="the process to be killed")
    wait_for(lambda: cluster.kubectl("get", "pod", "sleeper", "-n", namespace, check=False).returncode != 0,
             timeout=20, message="the pod object to be removed")
    assert not (agent_state(cluster, node_agent) / "pods" / pod["metadata"]["uid"]).exists()


def test_heartbeats_keep_the_node_ready_without_touching_capacity_the_operator_added(cluster, node_agent):
    slot = "personalai.dev/model-slot"
    patch = {"status": {"capacity": {slot: "3"}, "allocatable": {slot: "3"}}}
    cluster.kubectl("patch", "node", node_agent, "--subresource=status", "--type=merge", "-p", json.dumps(patch))

    def heartbeat_time():
        node = get_json(cluster, "node", node_agent)
        return next(c["lastHeartbeatTime"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    before = heartbeat_time()
    try:
        wait_for(lambda: heartbeat_time() != before, timeout=30, message="the next heartbeat")
        node = get_json(cluster, "node", node_agent)
        assert node["status"]["capacity"][slot] == "3" and node["status"]["allocatable"][slot] == "3"
        assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
        lease = get_json(cluster, "lease", node_agent, "-n", "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == node_agent and lease["spec"]["leaseDurationSeconds"] == 40
    finally:
        removal = {"status": {"capacity": {slot: None}, "allocatable": {slot: None}}}
        cluster.kubectl("patch", "node", node_agent, "--subresource=status", "--type=merge", "-p", json.dumps(removal),
                        check=False)
