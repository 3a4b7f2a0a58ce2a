"""The Helm chart as a cluster admin uses it: lint clean, install, an operator that works with exactly
the RBAC the chart grants (reflections -> TrainingRun -> Job -> promoted adapter -> chat server), and
an uninstall that leaves none of the release's objects behind.

CRDs: they are cluster-wide and other suites on the same control plane (the operator tests, this
suite's own operator) use them at the same time, so the live install uses `crds.install=false`
with the CRDs applied from crds/ as everywhere else (helm would refuse to adopt CRDs it did not make,
and its uninstall would delete every PersonalAI of the other suites). That the chart renders the CRDs
with `crds.install=true`, and that the API server accepts them, is checked by a server-side dry run.
"""

import base64
import json
import uuid

import pytest
import yaml
from cluster_harness import REPO, OperatorProcess, condition, get_json, items
from serving_cluster_helpers import create_personalai, finish_run, personalai, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "personalai")


def _token_kubeconfig(cluster, path, service_account: str, namespace: str):
    token = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=30m").stdout.strip()
    ca = base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "chart",
        "clusters": [{"name": "local", "cluster": {"server": cluster.server, "certificate-authority-data": ca}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "chart", "context": {"cluster": "local", "user": "operator"}}]}))
    return path


def test_chart_lints_clean_and_renders_crds(cluster):
    lint = cluster.helm("lint", "--strict", CHART, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 chart(s) failed" in lint.stdout

    with_crds = list(yaml.safe_load_all(cluster.helm("template", "t", CHART, "--set", "crds.install=true").stdout))
    crds = [d for d in with_crds if d and d["kind"] == "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in crds) == ["personalais.personalai.dev", "trainingruns.personalai.dev"]
    for crd in crds:
        dry = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(crd), check=False)
        assert dry.returncode == 0, dry.stderr
    without = cluster.helm("template", "t", CHART, "--set", "crds.install=false").stdout
    assert "CustomResourceDefinition" not in without
    rules = [r for d in with_crds if d and d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert not [r for r in rules if "*" in r["verbs"] + r["resources"] + r["apiGroups"]], "wildcards in RBAC"


def test_chart_installs_operator_works_with_its_rbac_and_uninstalls_clean(cluster, crds, suite, gpu_nodes, tmp_path):
    suffix = uuid.uuid4().hex[:5]
    release, release_ns, watched = f"srvc-{suffix}", f"srvchart-{suffix}", f"srvchartw-{suffix}"
    for ns in (release_ns, watched):
        cluster.kubectl("create", "namespace", ns)
    operator, uninstalled = None, False
    try:
        install = cluster.helm("install", release, CHART, "-n", release_ns, "--set", "crds.install=false",
                               "--set", f"watchNamespaces={{{watched}}}", "--set", f"gpu.product={suite.gpu_product}",
                               "--set", "gpu.servingSharing=shared", "--set", "operator.resyncSeconds=2", check=False)
        assert install.returncode == 0, install.stderr
        assert "STATUS: deployed" in install.stdout
        sa = f"{release}-operator"
        deployment = get_json(cluster, "deployment", sa, "-n", release_ns)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa

        # The operator as the chart's Deployment would run it: its env, its ServiceAccount's token.
        env = {e["name"]: e.get("value", "") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PERSONALAI_NAMESPACES"] == watched
        kubeconfig = _token_kubeconfig(cluster, tmp_path / "chart-sa.kubeconfig", sa, release_ns)
        operator = OperatorProcess(tmp_path / "chart-operator.log", kubeconfig, env).start()

        create_personalai(cluster, watched, "zoe")
        wait_for(lambda: condition(personalai(cluster, watched, "zoe"), "DataReady").get("status") == "True",
                 timeout=60, message="zoe assessed (the operator read the Secret through the chart's Role)")
        run = finish_run(cluster, watched, "zoe", timeout=120)
        assert get_json(cluster, "job", run["metadata"]["name"], "-n", watched)
        wait_serving(cluster, watched, "zoe", timeout=90)
        assert get_json(cluster, "deployment", "zoe-chat", "-n", watched)
        assert get_json(cluster, "secret", "zoe-chat-auth", "-n", watched)
        log = operator.log_text()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]

        cluster.helm("uninstall", release, "-n", release_ns, "--wait", "--timeout", "60s")
        uninstalled = True
    finally:
        if operator:
            operator.stop()
        cluster.kubectl("delete", "namespace", watched, "--wait=false", "--ignore-not-found", check=False)
        if not uninstalled:  # the test failed before its uninstall: do not leave cluster-wide RBAC behind
            cluster.helm("uninstall", release, "-n", release_ns, check=False)
    selector = f"app.kubernetes.io/instance={release}"
    left = cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout.split()
    for ns in (release_ns, watched):
        left += cluster.kubectl("get", "roles,rolebindings,serviceaccounts,deployments,services,configmaps",
                                "-n", ns, "-l", selector, "-o", "name", check=False).stdout.split()
    assert left == []
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, f"{release}-operator", check=False).returncode != 0
    assert cluster.kubectl("get", "serviceaccount", f"{release}-operator", "-n", release_ns, check=False).returncode != 0
    assert items(cluster, "pods", release_ns, "app.kubernetes.io/instance=" + release) == [] or wait_for(
        lambda: items(cluster, "pods", release_ns, "app.kubernetes.io/instance=" + release) == [], timeout=30,
        message="the operator pod gone")
    cluster.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)
