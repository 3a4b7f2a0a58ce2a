"""The chart's CRDs survive `helm uninstall`, and an upgrade that stops installing them, together with
every PersonalAI in the cluster.

The CRDs are cluster-wide and shared: other suites on this control plane apply them from crds/ and
use them at the same time. So this test applies them the same way, marks them with the ownership
metadata helm adopts (as one adopts CRDs installed before the chart), and removes that metadata
again at the end, leaving them as the other suites expect.
"""

import json
from pathlib import Path

import pytest
import yaml

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[3]

CRDS = ("personalais.personalai.dev", "trainingruns.personalai.dev")
HELM_OWNERSHIP = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")


@pytest.fixture
def shared_crds(cluster):
    """adopt(release): the shared CRDs, marked so that `release` may take them over."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", *(f"crd/{crd}" for crd in CRDS))

    def adopt(release) -> None:
        for crd in CRDS:
            cluster.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
            cluster.kubectl("annotate", "crd", crd, "--overwrite", f"{HELM_OWNERSHIP[0]}={release.name}",
                            f"{HELM_OWNERSHIP[1]}={release.namespace}")

    yield adopt
    for crd in CRDS:
        cluster.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by-", check=False)
        cluster.kubectl("annotate", "crd", crd, *(f"{key}-" for key in (*HELM_OWNERSHIP, "helm.sh/resource-policy")),
                        check=False)


def _crd_annotations(cluster) -> dict[str, dict[str, str]]:
    return {crd: json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"].get("annotations", {})
            for crd in CRDS}


def _create_personalai(cluster, namespace: str) -> None:
    personalai = yaml.safe_load((REPO / "examples" / "luke.yaml").read_text())
    wait_for(lambda: cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(personalai),
                                     check=False).returncode == 0, timeout=30, message="the PersonalAI API served")


def _still_there(cluster, namespace: str) -> None:
    for crd in CRDS:
        assert cluster.kubectl("get", "crd", crd, check=False).returncode == 0, f"{crd} was deleted"
    assert cluster.kubectl("get", "personalai", "luke", "-n", namespace, check=False).returncode == 0


def _installed_with_crds(cluster, release, shared_crds, watched: str) -> None:
    shared_crds(release)
    release.helm("install", "--set", "crds.install=true", "--set", f"watchNamespaces={{{watched}}}")
    assert all(annotations.get("helm.sh/resource-policy") == "keep"
               for annotations in _crd_annotations(cluster).values()), "the CRDs must be kept before uninstalling"
    _create_personalai(cluster, watched)


def test_crds_and_personalais_survive_helm_uninstall(cluster, release, shared_crds, new_namespace):
    watched = new_namespace("watched")
    _installed_with_crds(cluster, release, shared_crds, watched)

    said = release.uninstall()
    assert "kept due to the resource policy" in said and all(crd in said for crd in CRDS), said
    assert cluster.kubectl("get", "clusterrole", f"{release.name}-operator", check=False).returncode != 0
    _still_there(cluster, watched)


def test_an_upgrade_that_stops_installing_crds_keeps_them(cluster, release, shared_crds, new_namespace):
    watched = new_namespace("watched")
    _installed_with_crds(cluster, release, shared_crds, watched)

    release.helm("upgrade", "--reuse-values", "--set", "crds.install=false")
    manifest = cluster.helm("get", "manifest", release.name, "-n", release.namespace).stdout
    assert "CustomResourceDefinition" not in manifest
    _still_there(cluster, watched)
    release.uninstall()
    _still_there(cluster, watched)
