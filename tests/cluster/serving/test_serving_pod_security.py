"""Every pod the operator and the chart make is admitted under the `restricted` Pod Security
Standard: the trainer Job's pod, the chat server's pod and the chart's operator pod each pass a
server-side dry run as a Pod in a namespace that enforces `restricted` (with no warnings)."""

import json
import uuid

import pytest
import yaml
from serving_cluster_helpers import REPO, create_personalai, finish_run, get_json

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def restricted_ns(cluster):
    name = f"srvpsa-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/warn=restricted")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _dry_run_pod(cluster, namespace: str, name: str, template: dict):
    """`kubectl apply --dry-run=server` of the template as a Pod (its ServiceAccount made first: the
    admission chain refuses a pod whose ServiceAccount does not exist)."""
    spec = template["spec"]
    if spec.get("serviceAccountName"):
        cluster.kubectl("create", "serviceaccount", spec["serviceAccountName"], "-n", namespace, check=False)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": (template.get("metadata") or {}).get("labels", {})}, "spec": spec}
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)


def test_every_pod_template_is_admitted_as_restricted(cluster, srv_ns, restricted_ns):
    # The control: this namespace really refuses a pod that is not restricted.
    loose = {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    refused = _dry_run_pod(cluster, restricted_ns, "loose", loose)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr

    create_personalai(cluster, srv_ns, "pia")
    run = finish_run(cluster, srv_ns, "pia")
    job = get_json(cluster, "job", run["metadata"]["name"], "-n", srv_ns)
    server = wait_for(lambda: get_json(cluster, "deployment", "pia-chat", "-n", srv_ns), timeout=60,
                      message="the chat server Deployment")
    rendered = yaml.safe_load_all(cluster.helm("template", "t", str(REPO / "charts" / "personalai"),
                                               "--set", "crds.install=false").stdout)
    chart_operator = next(d for d in rendered if d and d["kind"] == "Deployment")

    templates = {"trainer": job["spec"]["template"], "server": server["spec"]["template"],
                 "operator": chart_operator["spec"]["template"]}
    for name, template in templates.items():
        result = _dry_run_pod(cluster, restricted_ns, name, template)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "Warning" not in result.stderr, f"{name}: {result.stderr}"
        assert "created (server dry run)" in result.stdout
