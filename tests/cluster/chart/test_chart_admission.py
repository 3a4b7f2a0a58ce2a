"""The chart's ValidatingAdmissionPolicy, as the real API server enforces it: in a watched namespace
only the operator's ServiceAccount (or a break-glass name) makes TrainingRuns or changes their spec
or labels; the trainer's status patches, metadata-only updates and deletes pass.

Users: the admin of the local control plane, and the operator's ServiceAccount by impersonation
(`kubectl --as`; the admin may impersonate), which holds the chart's Role in the watched namespace.
"""

import json

import pytest

from devcluster.waiting import wait_for
from personalai_operator import manifests, naming
from personalai_operator.models import PersonalAISpec

pytestmark = pytest.mark.cluster

ENFORCED_WITHIN = 20  # seconds: a new or changed policy reaches the API server's admission a moment later
PAI_SPEC = PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}})


def _run(namespace: str, name: str = "luke-3f9a2c1b", labelled_for: str = "luke") -> str:
    """A TrainingRun as the operator builds it, as JSON for `kubectl -f -`. Without its
    ownerReference: no PersonalAI exists here, and the garbage collector deletes runs of missing owners."""
    pai = {"apiVersion": manifests.API_VERSION, "kind": "PersonalAI",
           "metadata": {"name": "luke", "namespace": namespace, "uid": "not-checked"}}
    run = manifests.build_training_run(pai, PAI_SPEC, name, "sha256:" + "0" * 64, "v1-3f9a2c1b")
    del run["metadata"]["ownerReferences"]
    run["metadata"]["labels"][naming.LABEL_PERSONALAI] = labelled_for
    return json.dumps(run)


def _apply(cluster, namespace: str, run: str, *flags: str):
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", *flags, input=run, check=False)


def _enforced(cluster, namespace: str, run: str, *flags: str, refused: bool = True) -> None:
    """Wait (bounded) until a server-side dry run of `run` is refused (or accepted, refused=False)."""
    wait_for(lambda: (_apply(cluster, namespace, run, "--dry-run=server", *flags).returncode != 0) == refused,
             timeout=ENFORCED_WITHIN, message=f"the admission policy to {'refuse' if refused else 'accept'} the run")


def _admin(cluster) -> str:
    return cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()


@pytest.fixture
def watched(cluster, crds, release, new_namespace) -> str:
    """A namespace the installed release watches, with its admission policy enforced there."""
    namespace = new_namespace("watched")
    release.helm("install", "--set", "crds.install=false", "--set", f"watchNamespaces={{{namespace}}}")
    policy = ("validatingadmissionpolicy", f"{release.name}-operator-trainingruns", "-o", "jsonpath={.status}")
    checked = wait_for(lambda: (lambda status: status if status.get("observedGeneration") else None)(
        json.loads(cluster.kubectl("get", *policy).stdout or "{}")),
        timeout=ENFORCED_WITHIN, message="the policy's expressions type-checked")
    assert not (checked.get("typeChecking") or {}).get("expressionWarnings"), checked
    _enforced(cluster, namespace, _run(namespace))
    return namespace


def test_a_hand_made_trainingrun_is_refused_naming_the_field_and_the_way_out(cluster, release, watched):
    refused = _apply(cluster, watched, _run(watched))
    assert refused.returncode != 0
    assert "spec: TrainingRuns are made by the personalai operator from a PersonalAI" in refused.stderr
    assert f"not by {_admin(cluster)}" in refused.stderr and "spec.training instead" in refused.stderr
    assert cluster.kubectl("get", "trainingrun", "luke-3f9a2c1b", "-n", watched, check=False).returncode != 0


def test_the_operator_makes_runs_and_status_and_metadata_updates_and_deletes_pass(cluster, release, watched):
    made = _apply(cluster, watched, _run(watched), "--as", release.service_account)
    assert made.returncode == 0, made.stderr
    run = ("trainingrun", "luke-3f9a2c1b", "-n", watched)

    # The trainer's report, on the status subresource the policy does not match.
    status = {"status": {"artifact": {"location": "/artifacts/v1-3f9a2c1b", "manifestSha256": "0" * 64,
                                      "adapterVersion": "v1-3f9a2c1b"}}}
    cluster.kubectl("patch", *run, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    # What the garbage collector and kopf change: finalizers, annotations; spec and labels stay.
    cluster.kubectl("patch", *run, "--type=merge", "-p", json.dumps(
        {"metadata": {"finalizers": ["example.com/hold"], "annotations": {"example.com/note": "kept"}}}))
    cluster.kubectl("patch", *run, "--type=merge", "-p", json.dumps({"metadata": {"finalizers": None}}))

    relabel = cluster.kubectl("label", *run, "--overwrite", f"{naming.LABEL_PERSONALAI}=mara", check=False)
    assert relabel.returncode != 0 and "metadata.labels: TrainingRuns are made by the personalai operator" in \
        relabel.stderr, relabel.stderr
    reported = json.loads(cluster.kubectl("get", *run, "-o", "json").stdout)
    assert reported["status"]["artifact"]["adapterVersion"] == "v1-3f9a2c1b"
    assert reported["metadata"]["labels"][naming.LABEL_PERSONALAI] == "luke"
    cluster.kubectl("delete", *run, "--wait", "--timeout=30s")


def test_even_the_operator_must_label_a_run_with_its_personalai(cluster, release, watched):
    mislabelled = _apply(cluster, watched, _run(watched, labelled_for="mara"), "--as", release.service_account)
    assert mislabelled.returncode != 0
    assert f"metadata.labels: {naming.LABEL_PERSONALAI} must name spec.personalAI, luke" in mislabelled.stderr


def test_break_glass_names_may_make_runs_and_unwatched_namespaces_are_not_checked(cluster, release, watched,
                                                                                 new_namespace):
    unwatched = new_namespace("unwatched")
    accepted = _apply(cluster, unwatched, _run(unwatched), "--dry-run=server")
    assert accepted.returncode == 0, accepted.stderr

    release.helm("upgrade", "--reuse-values", "--set", f"admission.extraTrainingRunCreators={{{_admin(cluster)}}}")
    _enforced(cluster, watched, _run(watched), refused=False)
    made = _apply(cluster, watched, _run(watched))
    assert made.returncode == 0, made.stderr
