"""Artifact retention (spec.retention.artifactDays): what expires, with a clock the test sets; the prune
Job and the ledger it leaves."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from personalai_operator import artifact_retention as retention
from personalai_operator import manifests
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
OLD = "2026-08-01T12:00:00Z"  # 122 days before NOW
YOUNG = "2026-11-20T12:00:00Z"  # 11 days before NOW
PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "ada", "namespace": "people", "uid": "u-1"}}


def run(name, version, phase="Succeeded", ended=OLD):
    status = {"phase": phase, "artifact": {"adapterVersion": version}}
    if ended and phase in ("Succeeded", "Failed"):
        status["completionTime"] = ended
    return {"metadata": {"name": name}, "spec": {"adapterVersion": version}, "status": status}


def superseded(name, version, stopped=OLD):
    """Stopped by a newer run: Failed, no completionTime, the Failed condition's time says when."""
    return {"metadata": {"name": name}, "spec": {"adapterVersion": version},
            "status": {"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": "Superseded",
                                                          "lastTransitionTime": stopped}]}}


def status(current="v3-c", history=(), rejected=()):
    return {"currentAdapter": {"version": current} if current else None,
            "adapterHistory": [{"version": v} for v in history] + [{"version": v, "rejected": "missed"} for v in rejected]}


def paths(status_, runs, days=90, pruned=None):
    return [a.path for a in retention.expired_artifacts(status_, runs, days, NOW, pruned)]


def test_the_current_adapter_is_kept_but_its_runs_checkpoints_expire():
    assert paths(status(current="v3-c"), [run("ada-c", "v3-c")]) == ["checkpoints/ada-c"]


def test_the_promoted_history_is_kept():
    assert paths(status(history=["v1-a"]), [run("ada-a", "v1-a")]) == ["checkpoints/ada-a"]


def test_an_old_rejected_adapter_is_removed_though_the_history_records_it():
    assert paths(status(rejected=["v2-b"]), [run("ada-b", "v2-b")]) == ["v2-b", "checkpoints/ada-b"]


def test_an_old_failed_runs_checkpoints_and_partial_adapter_are_removed():
    assert paths(status(), [run("ada-f", "v4-f", phase="Failed")]) == ["v4-f", "checkpoints/ada-f"]


def test_a_superseded_run_ages_from_when_it_was_stopped():
    assert paths(status(), [superseded("ada-s", "v5-s")]) == ["v5-s", "checkpoints/ada-s"]
    assert paths(status(), [superseded("ada-s", "v5-s", stopped=YOUNG)]) == []


@pytest.mark.parametrize("phase", ["Pending", "Queued", "Running", None])
def test_a_run_that_has_not_ended_keeps_everything(phase):
    assert paths(status(current=None), [run("ada-r", "v6-r", phase=phase)]) == []


def test_young_artifacts_are_kept_and_the_boundary_is_artifact_days():
    assert paths(status(current=None), [run("ada-y", "v7-y", ended=YOUNG)]) == []
    assert paths(status(current=None), [run("ada-y", "v7-y", ended=YOUNG)], days=11) == ["v7-y", "checkpoints/ada-y"]
    assert paths(status(current=None), [run("ada-y", "v7-y", ended=YOUNG)], days=12) == []


def test_artifact_days_0_keeps_everything_until_the_personalai_is_deleted():
    assert paths(status(current=None), [run("ada-b", "v2-b"), run("ada-f", "v4-f", phase="Failed")], days=0) == []


def test_a_pruned_path_is_not_named_again_unless_its_run_ran_again():
    runs = [run("ada-b", "v2-b")]
    assert paths(status(current=None), runs, pruned={"v2-b": OLD, "checkpoints/ada-b": OLD}) == []
    rerun = "2026-08-05T12:00:00Z"  # retried after the prune, itself long ago: its new files expire too
    assert paths(status(current=None), [run("ada-b", "v2-b", ended=rerun)],
                 pruned={"v2-b": OLD, "checkpoints/ada-b": OLD}) == ["v2-b", "checkpoints/ada-b"]


def test_a_mix_names_exactly_what_is_expired_and_unused():
    runs = [run("ada-a", "v1-a"), run("ada-b", "v2-b"), run("ada-c", "v3-c"), run("ada-d", "v4-d", ended=YOUNG),
            run("ada-e", "v5-e", phase="Running")]
    assert paths(status(current="v3-c", history=["v1-a"], rejected=["v2-b"]), runs) == [
        "checkpoints/ada-a", "v2-b", "checkpoints/ada-b", "checkpoints/ada-c"]


def job(name, finished, pruning, component=retention.PRUNE_COMPONENT):
    conditions = [{"type": finished, "status": "True"}] if finished else []
    return {"metadata": {"name": name, "labels": {"personalai.dev/component": component},
                         "annotations": {retention.PRUNING_ANNOTATION: json.dumps(pruning)}},
            "status": {"conditions": conditions}}


def test_only_completed_prune_jobs_enter_the_ledger_once():
    removed = {"v2-b": OLD, "checkpoints/ada-b": OLD}
    jobs = [job("ada-prune-1", "Complete", removed), job("ada-prune-2", "Failed", {"v4-f": OLD}),
            job("ada-prune-3", None, {"v5-e": OLD}), job("ada-c", "Complete", {"v9": OLD}, component="trainer")]
    assert retention.newly_pruned(jobs, {}) == removed
    assert retention.newly_pruned(jobs, removed) == {}
    assert retention.read_ledger(manifests.build_retention_ledger(PAI, removed)) == removed
    assert retention.read_ledger({"data": {retention.LEDGER_KEY: "not json"}}) == {}


def test_the_event_and_audit_record_name_versions_and_runs_only():
    removed = ["v2-b", "checkpoints/ada-b", "checkpoints/ada-c"]
    message = retention.pruned_message(removed, 90)
    assert "adapters v2-b; checkpoints of TrainingRuns ada-b, ada-c" in message and "(90)" in message
    record = retention.retention_record(PAI, removed, 90, "2026-12-01T12:00:00Z")
    assert record == {"time": "2026-12-01T12:00:00Z", "event": "artifact-retention", "namespace": "people",
                      "personalai": "ada", "uid": "u-1", "artifactDays": 90, "adapters": ["v2-b"],
                      "checkpoints": ["ada-b", "ada-c"]}


def test_the_prune_job_is_small_restricted_gpu_free_and_owned():
    pruning = {"v2-b": OLD, "checkpoints/ada-b": OLD}
    settings = OperatorSettings(TRAINER_IMAGE="trainer:1", FINISHED_JOB_TTL_SECONDS=3600)
    built = manifests.build_prune_job(PAI, pruning, settings)
    assert built["metadata"]["name"] == f"ada-prune-{retention.pruning_digest(pruning)}"
    assert built["metadata"]["name"] == manifests.build_prune_job(PAI, dict(reversed(pruning.items())),
                                                                  settings)["metadata"]["name"]
    assert built["metadata"]["labels"] == {"personalai.dev/personalai": "ada", "personalai.dev/component": "artifact-prune",
                                           "app.kubernetes.io/managed-by": "personalai-operator"}
    assert built["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert json.loads(built["metadata"]["annotations"][retention.PRUNING_ANNOTATION]) == pruning
    spec = built["spec"]
    assert spec["ttlSecondsAfterFinished"] == 3600 and spec["activeDeadlineSeconds"] == manifests.PRUNE_DEADLINE_SECONDS
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert "affinity" not in pod and "tolerations" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"] == [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "ada-artifacts"}}]
    (container,) = pod["containers"]
    assert container["image"] == "trainer:1"
    assert container["command"] == ["python", "-m", "personalai_trainer.prune", "--root", "/artifacts", "--",
                                    "checkpoints/ada-b", "v2-b"]
    assert container["securityContext"] == manifests.build_restricted_container_security()
    assert "nvidia.com/gpu" not in json.dumps(container["resources"]) and container["resources"]["limits"]["memory"]


def test_the_prune_job_runs_where_the_chat_server_holds_the_volume():
    servers = [{"metadata": {"name": "old", "deletionTimestamp": "2026-12-01T11:00:00Z"}, "spec": {"nodeName": "gpu-1"}},
               {"metadata": {"name": "new"}, "spec": {"nodeName": "gpu-0"}}, {"metadata": {"name": "p"}, "spec": {}}]
    assert retention.volume_node(servers) == "gpu-0"
    assert retention.volume_node(servers[2:]) is None
    settings = OperatorSettings()
    pod = manifests.build_prune_job(PAI, {"v2-b": OLD}, settings, "gpu-0")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu-0"}
    assert pod["tolerations"] == manifests.build_gpu_tolerations(settings)  # on a GPU node, asking for no GPU
    assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"])
