"""Every pod the operator and the chart make is admitted under the `restricted` Pod Security
Standard: the trainer Job's pod, the chat server's pod and the chart's operator pod each pass a
server-side dry run as a Pod in a namespace that enforces `restricted` (with no warnings)."""

import json

import pytest
import yaml
from cluster_harness import REPO, get_json
from serving_cluster_helpers import create_personalai, finish_run

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def restricted_ns(cluster, namespace):
    """A namespace no operator watches, enforcing (and warning about) the restricted standard."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/warn=restricted")
    return namespace


def _dry_run_pod(cluster, namespace: str, name: str, template: dict):
    """`kubectl apply --dry-run=server` of the template as a Pod (its ServiceAccount made first: the
    admission chain refuses a pod whose ServiceAccount does not exist)."""
    spec = template["spec"]
    if spec.get("serviceAccountName"):
        cluster.kubectl("create", "serviceaccount", spec["serviceAccountName"], "-n", namespace, check=False)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": (template.get("metadata") or {}).get("labels", {})}, "spec": spec}
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)


def test_every_pod_template_is_admitted_as_restricted(cluster, ns, restricted_ns):
    # The control: this namespace really refuses a pod that is not restricted.
    loose = {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    refused = _dry_run_pod(cluster, restricted_ns, "loose", loose)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr

    create_personalai(cluster, ns, "pia")
    run = finish_run(cluster, ns, "pia")
    job = get_json(cluster, "job", run["metadata"]["name"], "-n", ns)
    server = wait_for(lambda: get_json(cluster, "deployment", "pia-chat", "-n", ns), timeout=60,
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
