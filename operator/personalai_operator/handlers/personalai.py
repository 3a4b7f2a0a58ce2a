"""PersonalAI handlers: assess the reflections, make the TrainingRun for (data, config), report.

Level-based: create, update, resume, a resync timer and a change of a run's phase all call the same
idempotent `reconcile_personalai`. The run's name is a hash of (data, base model, training
config), so a pass that finds it already there creates nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from personalai_operator import kube, manifests, metrics, naming
from personalai_operator.conditions import find_condition, make_condition, set_condition
from personalai_operator.handlers.common import SETTINGS, InvalidSpec, object_lock, parse_spec
from personalai_operator.handlers.serving import reconcile_serving
from personalai_operator.models import GROUP, VERSION, PersonalAISpec
from personalai_operator.personalai_status import DataVerdict, assess_data, derive_personalai_status, unavailable

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, "personalais")


def reconcile_personalai(namespace: str, name: str) -> dict[str, Any] | None:
    """Converge one PersonalAI; returns the status fields written (None when it is gone)."""
    with object_lock("PersonalAI", namespace, name):
        try:
            return _reconcile(namespace, name)
        except kube.NamespaceTerminating:
            return None  # the namespace and everything in it is going away


def _reconcile(namespace: str, name: str) -> dict[str, Any] | None:
    metrics.RECONCILES.labels(kind="PersonalAI").inc()
    personalai = kube.get("PersonalAI", namespace, name)
    if personalai is None or personalai["metadata"].get("deletionTimestamp"):
        return None
    status = personalai.get("status") or {}
    generation = personalai["metadata"].get("generation")
    try:
        spec = parse_spec(PersonalAISpec, personalai.get("spec"))
    except InvalidSpec as error:
        _report_invalid(personalai, status, str(error), generation)
        raise
    verdict = _assess(namespace, spec)
    run = _ensure_training_run(personalai, spec, verdict) if verdict.ready else None
    fields = derive_personalai_status(verdict, run, status, generation)
    fields = reconcile_serving(personalai, spec, status, run, fields, generation)
    if any(status.get(key) != value for key, value in fields.items()):
        kube.patch_status("PersonalAI", namespace, name, fields)
    _announce_data_change(personalai, status, fields)
    return fields


def _assess(namespace: str, spec: PersonalAISpec) -> DataVerdict:
    try:
        raw = kube.read_reflections(namespace, spec.reflections)
    except kube.ReflectionsUnavailable as error:
        return unavailable(error.reason, str(error))
    return assess_data(raw, spec.reflections.ref.key)


def _ensure_training_run(personalai: dict[str, Any], spec: PersonalAISpec, verdict: DataVerdict) -> dict[str, Any]:
    """The run for the current (data, config); created when absent."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    if SETTINGS.artifacts_volume == "pvc":
        kube.create_if_absent(manifests.build_artifacts_claim(personalai, SETTINGS))
    fingerprint = naming.training_fingerprint(verdict.data_version, spec.base_model, spec.training)
    run_name = naming.training_run_name(name, fingerprint)
    run = kube.get("TrainingRun", namespace, run_name)
    if run is not None:
        return run
    ordinal = len(kube.list_objects("TrainingRun", namespace, naming.personalai_labels(name))) + 1
    manifest = manifests.build_training_run(personalai, spec, run_name, verdict.data_version,
                                            naming.adapter_version(ordinal, fingerprint))
    run, created = kube.create_if_absent(manifest)
    if created:
        kube.emit_event(personalai, "Normal", "TrainingRunCreated", f"Created TrainingRun {run_name}.")
    return run


def _announce_data_change(personalai: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    before = find_condition(old.get("conditions"), "DataReady")
    after = find_condition(new.get("conditions"), "DataReady")
    if after and (before is None or (before["status"], before["reason"]) != (after["status"], after["reason"])):
        kube.emit_event(personalai, "Normal" if after["status"] == "True" else "Warning", after["reason"],
                        after["message"])


def _report_invalid(personalai: dict[str, Any], status: dict[str, Any], message: str, generation: int | None) -> None:
    conditions = set_condition(status.get("conditions") or [],
                               make_condition("Ready", False, "InvalidSpec", message, generation))
    if conditions != status.get("conditions"):
        kube.patch_status("PersonalAI", personalai["metadata"]["namespace"], personalai["metadata"]["name"],
                          {"phase": "Failed", "conditions": conditions})
        kube.emit_event(personalai, "Warning", "InvalidSpec", message)


@kopf.on.resume(*RESOURCE, id="resume", backoff=5)
@kopf.on.create(*RESOURCE, id="create", backoff=5)
@kopf.on.update(*RESOURCE, id="update", field="spec", backoff=5)
def on_personalai(namespace: str, name: str, **_: Any) -> None:
    reconcile_personalai(namespace, name)


@kopf.timer(*RESOURCE, interval=SETTINGS.resync_seconds, id="resync")
def resync_personalai(namespace: str, name: str, **_: Any) -> None:
    """Catches what no event announces: the reflections Secret edited in place."""
    try:
        reconcile_personalai(namespace, name)
    except InvalidSpec:
        pass  # reported as a condition already
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind="PersonalAI").inc()
        raise


def refresh_owner(namespace: str, personalai: str | None) -> None:
    """Something a PersonalAI owns changed: reconcile it now rather than at the next resync."""
    if not personalai:
        return
    try:
        reconcile_personalai(namespace, personalai)
    except Exception as error:  # the PersonalAI's own timer retries
        metrics.RECONCILE_ERRORS.labels(kind="PersonalAI").inc()
        log.warning("status refresh of PersonalAI %s failed: %s", personalai, type(error).__name__)


@kopf.on.field(GROUP, VERSION, "trainingruns", field="status.phase", id="owner-status")
def on_run_phase(body: dict[str, Any], **_: Any) -> None:
    """A run changed phase: bring its PersonalAI's Trained/Ready up to date now."""
    refresh_owner(body["metadata"]["namespace"], (body.get("spec") or {}).get("personalAI"))


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_COMPONENT: "server"}, id="server-status")
def on_server_deployment(body: dict[str, Any], **_: Any) -> None:
    """The chat server's Deployment changed (a pod became Ready, or not): refresh Serving now."""
    refresh_owner(body["metadata"]["namespace"], (body["metadata"].get("labels") or {}).get(naming.LABEL_PERSONALAI))
