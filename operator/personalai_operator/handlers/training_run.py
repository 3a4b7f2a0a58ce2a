"""TrainingRun handlers: make the run's ConfigMap, RBAC and Job; mirror the Job and pod into status.

Level-based: every trigger (create, resume, its PersonalAI's resync timer, any event on the run's Job or
pods) runs the same idempotent `reconcile_training_run`, which reads the current state and converges on it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from pydantic import ValidationError

from personalai_operator import kube, manifests, metrics, naming, watch_cache
from personalai_operator.conditions import find_condition, make_condition, set_condition
from personalai_operator.handlers.common import SETTINGS, InvalidSpec, namespace_of, object_lock, parse_spec
from personalai_operator.handlers.retrying import BACKOFF, backs_off
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
    run = kube.get("TrainingRun", namespace, name, fresh=True)  # its status is the base of the next one
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
        refusal = None if job else _refusal(run, spec, personalai)
        if refusal:  # a refusal is for good: confirmed on the API's answers, not the cache's
            personalai = kube.get("PersonalAI", namespace, spec.personal_ai, fresh=True)
            refusal = _refusal(run, spec, personalai, fresh=True)
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
        kube.patch_status("TrainingRun", namespace, name, update.fields, read_as=run)
    for event in update.events:
        kube.emit_event(run, event.type, event.reason, event.message)
    key = f"{namespace}/{name}"
    metrics.record_run_phase(key, update.fields["phase"])
    if "queuedSeconds" in update.fields:
        metrics.record_time_queued(key, update.fields["queuedSeconds"])
    return update.fields["phase"]


def _refusal(run: dict[str, Any], spec: TrainingRunSpec, personalai: dict[str, Any] | None,
             fresh: bool = False) -> str | None:
    metadata = kube.read_metadata(spec.reflections.kind, run["metadata"]["namespace"], spec.reflections.ref.name,
                                  fresh=fresh)
    return run_refusal(run, personalai, metadata)


def supersede_run(run: dict[str, Any], newer: str | None) -> None:
    """Stop a run its PersonalAI no longer wants (the data or config changed, `newer` names the run for
    them; None: the PersonalAI is suspended): its Job goes, it says why."""
    namespace, name = run["metadata"]["namespace"], run["metadata"]["name"]
    with object_lock("TrainingRun", namespace, name):
        run = kube.get("TrainingRun", namespace, name, fresh=True) or {}
        status = run.get("status") or {}
        if not run or status.get("phase") in PHASES_DONE:
            return  # finished meanwhile: its outcome stands
        # Status first: a reconcile of this run that follows sees it stopped and makes no Job again.
        fields = superseded_status(status, newer, run["metadata"].get("generation"))
        kube.patch_status("TrainingRun", namespace, name, fields, read_as=run)
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
    return kube.get("TrainingRun", namespace, name, fresh=True)


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
            if created and SETTINGS.fault_crash_after == "job-created":
                os._exit(1)  # TEST-ONLY (settings.fault_crash_after): a crash before the status says so
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


@kopf.on.resume(*RESOURCE, id="resume", backoff=BACKOFF.cap_seconds)
@kopf.on.create(*RESOURCE, id="create", backoff=BACKOFF.cap_seconds)
@backs_off()
def on_training_run(namespace: str | None, name: str, **_: Any) -> None:
    reconcile_training_run(namespace_of("TrainingRun", namespace), name)


def resync_runs(namespace: str, personalai: str) -> None:
    """The runs' part of their PersonalAI's resync timer: each run still going, or whose report is not yet
    judged, is reconciled; a finished and judged one has nothing left to observe.

    Runs have no timer of their own: kopf puts its finalizer on every object with a timer, so each run's
    creation cost a patch and a watch round trip before its Job, and its deletion (erasure) waited for
    the operator to take the finalizer off."""
    for run in kube.list_objects("TrainingRun", namespace, naming.personalai_labels(personalai)):
        status = run.get("status") or {}
        validated = find_condition(status.get("conditions"), "Validated") or {}
        if status.get("phase") in PHASES_DONE and validated.get("status") in ("True", "False"):
            continue
        reconcile_quietly(namespace, run["metadata"]["name"], "resync")


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
@kopf.on.event("v1", "pods", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
def on_trainer_object(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **event: Any) -> None:
    """A Job or pod of a run changed: reconcile the run now rather than at the next resync."""
    # kopf names the event's kind `type`, taken from **event so as not to shadow the builtin used below.
    watch_cache.observe(body["kind"], event.get("type"), body)  # the reconcile reads this version, or a later one
    reconcile_quietly(namespace_of("Job or Pod", namespace), labels[naming.LABEL_TRAINING_RUN], "reconcile")


def reconcile_quietly(namespace: str, name: str, what: str) -> None:
    """A run reconciled on another object's behalf: a failure is counted and logged, not raised (the next
    event of its Job or pods, or its PersonalAI's resync, tries again); an invalid spec is reported already."""
    try:
        reconcile_training_run(namespace, name)
    except InvalidSpec:
        pass
    except Exception as error:
        metrics.RECONCILE_ERRORS.labels(kind="TrainingRun").inc()
        log.warning("%s of TrainingRun %s failed: %s", what, name, type(error).__name__)
