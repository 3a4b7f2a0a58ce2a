"""TrainingRun handlers: make the run's ConfigMap, RBAC and Job; mirror the Job and pod into status.

Level-based: every trigger (create, resume, a timer, any event on the run's Job or pods) runs the
same idempotent `reconcile_training_run`, which reads the current state and converges on it.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from personalai_operator import kube, manifests, metrics, naming
from personalai_operator.conditions import find_condition, make_condition, set_condition
from personalai_operator.handlers.common import SETTINGS, InvalidSpec, namespace_of, object_lock, parse_spec
from personalai_operator.models import GROUP, VERSION, PersonalAISpec, TrainingRunSpec
from personalai_operator.run_status import (
    PHASES_DONE,
    derive_run_status,
    is_superseded,
    restarted_status,
    status_changed,
    superseded_status,
)
from personalai_operator.run_trust import run_refusal, trusted_run

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, "trainingruns")


def reconcile_training_run(namespace: str, name: str) -> str | None:
    """Converge one run; returns its phase (None when it no longer exists)."""
    with object_lock("TrainingRun", namespace, name):
        try:
            return _reconcile(namespace, name)
        except kube.NamespaceTerminating:
            return None  # the namespace and everything in it is going away


def _reconcile(namespace: str, name: str) -> str | None:
    metrics.RECONCILES.labels(kind="TrainingRun").inc()
    run = kube.get("TrainingRun", namespace, name)
    if run is None or run["metadata"].get("deletionTimestamp"):
        metrics.record_run_phase(f"{namespace}/{name}", None)
        return None
    status = run.get("status") or {}
    generation = run["metadata"].get("generation")
    try:
        spec = parse_spec(TrainingRunSpec, run.get("spec"))
    except InvalidSpec as error:
        _report_invalid(run, status, str(error), generation)
        raise
    job = kube.get("Job", namespace, name)
    if is_superseded(status):
        if job:  # stopped before its Job went (an operator restart between the two): finish stopping it
            kube.delete_if_present("Job", namespace, name)
        return "Failed"
    if job and job["metadata"].get("deletionTimestamp") and status.get("phase") not in PHASES_DONE:
        return status.get("phase")  # a restarted run's old Job on its way out: its deletion event brings us back
    if status.get("phase") not in PHASES_DONE:
        personalai = kube.get("PersonalAI", namespace, spec.personal_ai)
        refusal = None if job else run_refusal(run, personalai, kube.read_metadata(
            spec.reflections.kind, namespace, spec.reflections.ref.name))
        if refusal:  # not its PersonalAI's own run: no Job, so no trainer mounts that Secret or volume
            _report_failed(run, "Refused", refusal)
            return "Failed"
        job = _ensure_children(run, spec, personalai) or job
    # This Job's own pods: a retried run's earlier pods may still be on their way out.
    pods = [pod for pod in kube.list_objects("Pod", namespace, {naming.LABEL_TRAINING_RUN: name})
            if any(ref.get("uid") == job["metadata"].get("uid") for ref in pod["metadata"].get("ownerReferences") or [])
            ] if job else []
    if job is None and status.get("phase") in PHASES_DONE:
        return status["phase"]  # the Job was cleaned up after the run ended; keep the recorded outcome
    trusted = trusted_run(run, job) or run
    verdict = trusted["status"].get("validation") if trusted["status"].get("phase") == "Succeeded" else None
    update = derive_run_status(job, pods, status, generation, validation=verdict or None)
    if status_changed(update, status):
        kube.patch_status("TrainingRun", namespace, name, update.fields)
    for event in update.events:
        kube.emit_event(run, event.type, event.reason, event.message)
    key = f"{namespace}/{name}"
    metrics.record_run_phase(key, update.fields["phase"])
    if "queuedSeconds" in update.fields:
        metrics.record_time_queued(key, update.fields["queuedSeconds"])
    return update.fields["phase"]


def supersede_run(run: dict[str, Any], newer: str | None) -> None:
    """Stop a run its PersonalAI no longer wants (the data or config changed, `newer` names the run for
    them; None: the PersonalAI is suspended): its Job goes, it says why."""
    namespace, name = run["metadata"]["namespace"], run["metadata"]["name"]
    with object_lock("TrainingRun", namespace, name):
        run = kube.get("TrainingRun", namespace, name) or {}
        status = run.get("status") or {}
        if not run or status.get("phase") in PHASES_DONE:
            return  # finished meanwhile: its outcome stands
        # Status first: a reconcile of this run that follows sees it stopped and makes no Job again.
        fields = superseded_status(status, newer, run["metadata"].get("generation"))
        kube.patch_status("TrainingRun", namespace, name, fields)
        kube.delete_if_present("Job", namespace, name)
        kube.emit_event(run, "Normal", "Superseded", fields["message"])
    metrics.record_run_phase(f"{namespace}/{name}", "Failed")


def restart_run(run: dict[str, Any], reason: str, message: str, retry: str | None = None) -> dict[str, Any] | None:
    """Start a finished run over with a fresh Job (a retry, or a superseded run whose inputs are back)."""
    namespace, name = run["metadata"]["namespace"], run["metadata"]["name"]
    with object_lock("TrainingRun", namespace, name):
        # The Job first: a status reset with the old Job still there would read its failure again.
        kube.delete_if_present("Job", namespace, name)
        kube.patch_status("TrainingRun", namespace, name,
                          restarted_status(run.get("status") or {}, reason, message,
                                           run["metadata"].get("generation"), retry))
        kube.emit_event(run, "Normal", reason, message)
    reconcile_training_run(namespace, name)  # the fresh Job now, not at the next event
    return kube.get("TrainingRun", namespace, name)


def _ensure_children(run: dict[str, Any], spec: TrainingRunSpec,
                     personalai: dict[str, Any] | None) -> dict[str, Any] | None:
    """Create whatever the run lacks (storage, config, RBAC, the Job); returns the Job."""
    namespace = run["metadata"]["namespace"]
    display_name = (personalai or {}).get("spec", {}).get("displayName") or spec.personal_ai
    current_adapter = (((personalai or {}).get("status") or {}).get("currentAdapter") or {}).get("version")
    try:
        memory = manifests.served_memory(PersonalAISpec.model_validate(personalai["spec"]) if personalai else None)
    except ValidationError:
        memory = None  # the PersonalAI's own reconcile reports its spec; the trainer's defaults apply
    if SETTINGS.artifacts_volume == "pvc":
        # Owned by the PersonalAI so the server can mount it after the run is gone.
        owner = personalai or run
        claim = manifests.build_artifacts_claim(owner, SETTINGS)
        claim["metadata"]["name"] = naming.artifacts_claim_name(spec.personal_ai)
        kube.create_if_absent(claim)
    if SETTINGS.model_cache_claim:
        kube.create_if_absent(manifests.build_model_cache_claim(namespace, SETTINGS))
    job = None
    for child in manifests.build_run_children(run, spec, display_name, SETTINGS, current_adapter, memory):
        obj, created = kube.create_if_absent(child)
        if child["kind"] == "Job":
            job = obj
            if created:
                metrics.JOBS_CREATED.inc()
                kube.emit_event(run, "Normal", "JobCreated", f"Created trainer Job {obj['metadata']['name']}.")
    return job


def _report_invalid(run: dict[str, Any], status: dict[str, Any], message: str, generation: int | None) -> None:
    _report_failed(run, "InvalidSpec", message)


def _report_failed(run: dict[str, Any], reason: str, message: str) -> None:
    """Failed for a reason no retry fixes (the spec), said once as a condition, the message and an Event."""
    status = run.get("status") or {}
    conditions = set_condition(status.get("conditions") or [],
                               make_condition("Failed", True, reason, message, run["metadata"].get("generation")))
    if conditions != status.get("conditions"):
        kube.patch_status("TrainingRun", run["metadata"]["namespace"], run["metadata"]["name"],
                          {"phase": "Failed", "conditions": conditions, "message": message})
        kube.emit_event(run, "Warning", reason, message)


@kopf.on.resume(*RESOURCE, id="resume", backoff=5)
@kopf.on.create(*RESOURCE, id="create", backoff=5)
def on_training_run(namespace: str | None, name: str, **_: Any) -> None:
    reconcile_training_run(namespace_of("TrainingRun", namespace), name)


# A failed resync comes back at the resync interval, not after kopf's 60 s default backoff.
@kopf.timer(*RESOURCE, interval=SETTINGS.resync_seconds, backoff=SETTINGS.resync_seconds, id="resync")
def resync_training_run(namespace: str | None, name: str, status: kopf.Status, **_: Any) -> None:
    validated = find_condition(status.get("conditions"), "Validated") or {}
    if status.get("phase") in PHASES_DONE and validated.get("status") in ("True", "False"):
        return  # finished, and the report already checked and judged: nothing left to observe
    try:
        reconcile_training_run(namespace_of("TrainingRun", namespace), name)
    except InvalidSpec:
        pass  # reported as a condition already; a timer retrying would only repeat it
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind="TrainingRun").inc()
        raise


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
@kopf.on.event("v1", "pods", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
def on_trainer_object(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A Job or pod of a run changed: reconcile the run now rather than at the next resync."""
    run_name = labels[naming.LABEL_TRAINING_RUN]
    try:
        reconcile_training_run(namespace_of("Job or Pod", namespace), run_name)
    except InvalidSpec:
        pass
    except Exception as error:  # the next event or the resync timer will try again
        metrics.RECONCILE_ERRORS.labels(kind="TrainingRun").inc()
        log.warning("reconcile of TrainingRun %s failed: %s", run_name, type(error).__name__)
