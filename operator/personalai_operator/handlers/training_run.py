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
from personalai_operator.handlers.common import SETTINGS, InvalidSpec, object_lock, parse_spec
from personalai_operator.models import GROUP, VERSION, PersonalAISpec, TrainingRunSpec
from personalai_operator.run_status import PHASES_DONE, derive_run_status, status_changed, validated_condition

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
    if status.get("phase") not in PHASES_DONE:
        job = _ensure_children(run, spec) or job
    pods = kube.list_objects("Pod", namespace, {naming.LABEL_TRAINING_RUN: name}) if job else []
    if job is None and status.get("phase") in PHASES_DONE:
        return status["phase"]  # the Job was cleaned up after the run ended; keep the recorded outcome
    update = derive_run_status(job, pods, status, generation)
    if status_changed(update, status):
        kube.patch_status("TrainingRun", namespace, name, update.fields)
    for event in update.events:
        kube.emit_event(run, event.type, event.reason, event.message)
    key = f"{namespace}/{name}"
    metrics.record_run_phase(key, update.fields["phase"])
    if "queuedSeconds" in update.fields:
        metrics.record_time_queued(key, update.fields["queuedSeconds"])
    return update.fields["phase"]


def _ensure_children(run: dict[str, Any], spec: TrainingRunSpec) -> dict[str, Any] | None:
    """Create whatever the run lacks (storage, config, RBAC, the Job); returns the Job."""
    namespace = run["metadata"]["namespace"]
    personalai = kube.get("PersonalAI", namespace, spec.personal_ai)
    display_name = (personalai or {}).get("spec", {}).get("displayName") or spec.personal_ai
    current_adapter = (((personalai or {}).get("status") or {}).get("currentAdapter") or {}).get("version")
    try:
        memory = manifests.served_memory(PersonalAISpec.model_validate(personalai["spec"]) if personalai else None)
    except ValidationError:
        memory = None  # the PersonalAI's own reconcile reports its spec; the trainer's defaults apply
    if SETTINGS.artifacts_volume == "pvc":
        # Owned by the PersonalAI so the server can mount it after the run is gone; a hand-made
        # run without one owns its own.
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
    conditions = set_condition(status.get("conditions") or [],
                               make_condition("Failed", True, "InvalidSpec", message, generation))
    if conditions != status.get("conditions"):
        kube.patch_status("TrainingRun", run["metadata"]["namespace"], run["metadata"]["name"],
                          {"phase": "Failed", "conditions": conditions, "message": message})
        kube.emit_event(run, "Warning", "InvalidSpec", message)


@kopf.on.resume(*RESOURCE, id="resume", backoff=5)
@kopf.on.create(*RESOURCE, id="create", backoff=5)
def on_training_run(namespace: str, name: str, **_: Any) -> None:
    reconcile_training_run(namespace, name)


@kopf.timer(*RESOURCE, interval=SETTINGS.resync_seconds, id="resync")
def resync_training_run(namespace: str, name: str, status: dict[str, Any], **_: Any) -> None:
    validated = find_condition(status.get("conditions"), "Validated") or {}
    if status.get("phase") in PHASES_DONE and status.get("validation") and \
            validated.get("status") == validated_condition(status["validation"], None)["status"]:
        return  # finished, and the trainer's verdict is already mirrored: nothing left to observe
    try:
        reconcile_training_run(namespace, name)
    except InvalidSpec:
        pass  # reported as a condition already; a timer retrying would only repeat it
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind="TrainingRun").inc()
        raise


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
@kopf.on.event("v1", "pods", labels={naming.LABEL_TRAINING_RUN: kopf.PRESENT})
def on_trainer_object(body: dict[str, Any], **_: Any) -> None:
    """A Job or pod of a run changed: reconcile the run now rather than at the next resync."""
    run_name = body["metadata"]["labels"][naming.LABEL_TRAINING_RUN]
    try:
        reconcile_training_run(body["metadata"]["namespace"], run_name)
    except InvalidSpec:
        pass
    except Exception as error:  # the next event or the resync timer will try again
        metrics.RECONCILE_ERRORS.labels(kind="TrainingRun").inc()
        log.warning("reconcile of TrainingRun %s failed: %s", run_name, type(error).__name__)
