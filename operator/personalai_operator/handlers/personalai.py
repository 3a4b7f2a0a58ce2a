"""PersonalAI handlers: assess the reflections, make the TrainingRun for (data, config), serve, report.

Level-based: create, update, resume, a resync timer, a change of a run's phase and a change of the
chat server all call the same idempotent `reconcile_personalai`: read (the PersonalAI, its data,
its run, the person's token), decide (promotion), apply (the run, unless spec.suspend; the chat
server), derive the status in one place (personalai_status), write it, report (events). The run's
name is a hash of (data, base model, training config), so a pass that finds it already there creates
nothing.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import urllib.error
import urllib.request
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from personalai_contracts.endpoints import SERVICE_NAME_LABEL, ready_address
from personalai_operator import audit, erasure, kube, manifests, metrics, naming, serving, watch_cache
from personalai_operator.conditions import Condition, find_condition, now_rfc3339, set_condition
from personalai_operator.handlers.artifact_retention import enforce_artifact_retention
from personalai_operator.handlers.common import SETTINGS, InvalidSpec, namespace_of, object_lock, parse_spec
from personalai_operator.handlers.retrying import BACKOFF, RESYNC_BACKOFF, backs_off
from personalai_operator.handlers.serving import reconcile_serving
from personalai_operator.handlers.training_run import restart_run, resync_runs, supersede_run
from personalai_operator.models import GROUP, VERSION, PersonalAISpec
from personalai_operator.personalai_status import (
    DataVerdict,
    assess_data,
    derive_personalai_status,
    invalid_spec_status,
    unavailable,
)
from personalai_operator.promotion import Promotion, known_versions, promote
from personalai_operator.run_status import PHASES_DONE, RETRY_ANNOTATION, is_superseded, retry_due
from personalai_operator.run_trust import trusted_run

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
    personalai = kube.get("PersonalAI", namespace, name, fresh=True)  # its status is the base of the next one
    if personalai is None or personalai["metadata"].get("deletionTimestamp"):
        return None
    status = personalai.get("status") or {}
    generation = personalai["metadata"].get("generation")
    try:
        spec = parse_spec(PersonalAISpec, personalai.get("spec"))
    except InvalidSpec as error:
        _report_invalid(personalai, status, str(error), generation)
        raise
    access = _ensure_token(personalai)
    verdict = _assess(namespace, name, spec)
    version = verdict.trainable_version
    if spec.suspend:
        _stop_runs(personalai)
    made = _ensure_training_run(personalai, spec, version) if version and not spec.suspend else None
    # The run's status is partly the trainer's to write: believe only what its Job and spec confirm.
    run = trusted_run(made, kube.get("Job", namespace, made["metadata"]["name"]) if made else None,
                      known_versions(status.get("currentAdapter"), status.get("adapterHistory") or []))
    promotion = promote(status, run)
    observed = reconcile_serving(personalai, spec, promotion)
    fields = derive_personalai_status(verdict, run, promotion, observed, status, generation,
                                      suspended=spec.suspend, access=access)
    if any(status.get(key) != value for key, value in fields.items()):
        kube.patch_status("PersonalAI", namespace, name, fields, read_as=personalai)
    _announce(personalai, status, fields, promotion)
    return fields


def _ensure_token(personalai: dict[str, Any]) -> dict[str, str] | None:
    """The person's token Secret, made at the first reconcile and again once deleted (rotation): status.access."""
    secret, created = kube.create_if_absent(serving.build_auth_secret(personalai, serving.new_token()))
    access = serving.access_status(secret)
    if created:
        kube.emit_event(personalai, "Normal", "TokenCreated",
                        f"Created the bearer token in Secret {secret['metadata']['name']}.")
    elif access is None:
        log.warning("Secret %s has no key %s: delete it to have a new token made", secret["metadata"]["name"],
                    serving.AUTH_KEY)
    return access


def _stop_runs(personalai: dict[str, Any]) -> None:
    """spec.suspend: every run still going is stopped; lifting it resumes the one for the current inputs."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    for run in kube.list_objects("TrainingRun", namespace, naming.personalai_labels(name)):
        if (run.get("status") or {}).get("phase") not in PHASES_DONE:
            supersede_run(run, None)


# The verdict on each PersonalAI's reflections, by the version of the object holding them: a pass checks
# access on the metadata (cached) and reads the data again only once that object changed. No content.
_verdicts: dict[tuple[str, str], tuple[tuple[str, str, str, str], DataVerdict]] = {}


def _assess(namespace: str, personalai: str, spec: PersonalAISpec) -> DataVerdict:
    source = spec.reflections
    try:
        read_as = (source.kind, source.ref.name, source.ref.key,
                   kube.reflections_version(namespace, source, personalai))
        known = _verdicts.get((namespace, personalai))
        if known is not None and known[0] == read_as:
            return known[1]
        raw = kube.read_reflections(namespace, source, personalai)
    except kube.ReflectionsUnavailable as error:
        _verdicts.pop((namespace, personalai), None)
        return unavailable(error.reason, str(error))
    verdict = _verdicts[(namespace, personalai)] = (read_as, assess_data(raw, source.ref.key))
    return verdict[1]


def _ensure_training_run(personalai: dict[str, Any], spec: PersonalAISpec, data_version: str) -> dict[str, Any]:
    """The run for the current (data, config): created when absent, the only one with a trainer Job.

    Runs still going for earlier inputs are stopped first, so there is never a second trainer; a failed
    run starts over once per new value of the PersonalAI's retry annotation.
    """
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    if SETTINGS.artifacts_volume == "pvc":
        kube.create_if_absent(manifests.build_artifacts_claim(personalai, SETTINGS))
    fingerprint = naming.training_fingerprint(data_version, spec.base_model, spec.training)
    run_name = naming.training_run_name(name, fingerprint)
    runs = kube.list_objects("TrainingRun", namespace, naming.personalai_labels(name))
    if all(candidate["metadata"]["name"] != run_name for candidate in runs):
        # About to make a run and number its adapter: decide on the API's list, not the cache's.
        runs = kube.list_objects("TrainingRun", namespace, naming.personalai_labels(name), fresh=True)
    for older in runs:
        if older["metadata"]["name"] != run_name and (older.get("status") or {}).get("phase") not in PHASES_DONE:
            supersede_run(older, run_name)
    retry = (personalai["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    run = next((candidate for candidate in runs if candidate["metadata"]["name"] == run_name), None)
    if run is not None:
        return _restart_if_asked(run, retry) or run
    manifest = manifests.build_training_run(personalai, spec, run_name, data_version,
                                            naming.adapter_version(len(runs) + 1, fingerprint))
    if retry:  # the value in force when the run was made: only a new one retries it
        manifest["metadata"]["annotations"] = {RETRY_ANNOTATION: retry}
    run, created = kube.create_if_absent(manifest)
    if created:
        kube.emit_event(personalai, "Normal", "TrainingRunCreated", f"Created TrainingRun {run_name}.")
    return run


def _restart_if_asked(run: dict[str, Any], retry: str | None) -> dict[str, Any] | None:
    """The run started over when it was superseded and its inputs are current again, or a retry asks."""
    if not (is_superseded(run.get("status") or {}) or retry_due(run, retry)):
        return None
    # A restart deletes the run's Job: decided on the API's copy, never on a cached one from before the last restart.
    run = kube.get("TrainingRun", run["metadata"]["namespace"], run["metadata"]["name"], fresh=True) or {}
    if not run:
        return None
    if is_superseded(run.get("status") or {}):
        return restart_run(run, "Resumed", "Resumed: the PersonalAI's data and training config are this run's again.")
    if retry_due(run, retry):
        return restart_run(run, "Retrying", f"Retrying: the PersonalAI's {RETRY_ANNOTATION} is now {retry!r}.",
                           retry)
    return None


def _announce(personalai: dict[str, Any], old: dict[str, Any], new: dict[str, Any], promotion: Promotion) -> None:
    """Events for what a person would want to hear about: a new data verdict, a promoted adapter."""
    before = find_condition(old.get("conditions"), "DataReady")
    after = find_condition(new.get("conditions"), "DataReady")
    if after and (before is None or (before["status"], before["reason"]) != (after["status"], after["reason"])):
        kube.emit_event(personalai, "Normal" if after["status"] == "True" else "Warning", after["reason"],
                        after["message"])
    if promotion.promoted and promotion.current:
        kube.emit_event(personalai, "Normal", "AdapterPromoted",
                        f"Adapter {promotion.current['version']} from TrainingRun "
                        f"{promotion.current.get('trainingRun')} passed validation and is now current.")
    current, previous = new.get("currentAdapter"), old.get("currentAdapter")
    if current and current.get("version") != (previous or {}).get("version"):  # a run's, or an A/B test's Promote
        audit.write(audit.promotion_record(personalai, current, previous, now_rfc3339()),
                    SETTINGS.audit_log, SETTINGS.audit_keep_days)


def _report_invalid(personalai: dict[str, Any], status: dict[str, Any], message: str, generation: int | None) -> None:
    fields = invalid_spec_status(status, message, generation)
    if fields["conditions"] != status.get("conditions"):
        kube.patch_status("PersonalAI", personalai["metadata"]["namespace"], personalai["metadata"]["name"], fields)
        kube.emit_event(personalai, "Warning", "InvalidSpec", message)


@kopf.on.resume(*RESOURCE, id="resume", backoff=BACKOFF.cap_seconds)
@kopf.on.create(*RESOURCE, id="create", backoff=BACKOFF.cap_seconds)
@kopf.on.update(*RESOURCE, id="update", field="spec", backoff=BACKOFF.cap_seconds)
@backs_off()
def on_personalai(namespace: str | None, name: str, **_: Any) -> None:
    reconcile_personalai(namespace_of("PersonalAI", namespace), name)


# A failed resync comes back from the resync interval up, not after kopf's 60 s default backoff.
@kopf.timer(*RESOURCE, interval=SETTINGS.resync_seconds, backoff=RESYNC_BACKOFF.cap_seconds, id="resync")
@backs_off(RESYNC_BACKOFF)
def resync_personalai(namespace: str | None, name: str, **_: Any) -> None:
    """Catches what no event announces: the reflections Secret edited in place, a run's missed event (its
    runs are resynced here first, so the PersonalAI then reads their latest status); artifacts expiring."""
    try:
        resync_runs(namespace_of("PersonalAI", namespace), name)
        reconcile_personalai(namespace_of("PersonalAI", namespace), name)
        enforce_artifact_retention(namespace_of("PersonalAI", namespace), name)
    except InvalidSpec:
        pass  # reported as a condition already
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind="PersonalAI").inc()
        raise


# What each erasure in progress has found so far, by uid: later passes see only what is left.
# In memory: after an operator restart the record counts what that operator still found.
_erasures_seen: dict[str, erasure.Inventory] = {}
# What the chat server said of the remote engine's adapters, by uid, once settled (None: no remote engine).
_remote_unloads: dict[str, erasure.RemoteUnload | None] = {}
# Erasures this process has recorded, by uid: kopf may call the handler again before its finalizer is
# gone (a conflict on that patch), and a second record, of nothing removed, would misreport the first.
_erasures_recorded: collections.OrderedDict[str, None] = collections.OrderedDict()
ERASURES_REMEMBERED = 10_000
ERASURE_RETRY_SECONDS = 3.0
FORGET_TIMEOUT_SECONDS = 10.0
ERASURE_STALLED_RETRY_SECONDS = 30.0


@kopf.on.delete(*RESOURCE, id="erase", backoff=BACKOFF.cap_seconds)
@backs_off()
def erase_personalai(body: kopf.Body, namespace: str | None, name: str, runtime: dt.timedelta, **_: Any) -> None:
    """Have a remote engine unload the person's adapters, delete everything made for the PersonalAI,
    wait until it and its pods are gone, then say so.

    kopf holds its finalizer on the PersonalAI until this returns: with the operator down the object
    stays Terminating (README "Erasure" has the break-glass step)."""
    namespace = namespace_of("PersonalAI", namespace)
    personalai = dict(body)
    with object_lock("PersonalAI", namespace, name):
        uid = personalai["metadata"]["uid"]
        if uid in _erasures_recorded:
            return
        found = _erasable(namespace, name)
        if uid not in _remote_unloads:
            # First, while the chat server still runs: the remote engine's adapters, which no delete reaches.
            unload = _unload_remote_adapters(personalai, found)
            if unload is not None and unload.retry and runtime.total_seconds() <= SETTINGS.erasure_timeout_seconds:
                _set_purged(personalai, erasure.unload_pending_condition(unload))
                raise kopf.TemporaryError(f"erasure of PersonalAI {name} waits for its chat server",
                                          delay=ERASURE_RETRY_SECONDS)
            _remote_unloads[uid] = unload
        for kind, object_name in erasure.to_delete(found):
            kube.delete_if_present(kind, namespace, object_name)
        remaining = erasure.inventory(found)
        removed = _erasures_seen[uid] = erasure.merge(_erasures_seen.get(uid, {}), remaining)
        if remaining:
            overdue = runtime.total_seconds() > SETTINGS.erasure_timeout_seconds
            _set_purged(personalai, erasure.pending_condition(remaining, overdue, SETTINGS.erasure_timeout_seconds))
            raise kopf.TemporaryError(f"erasure of PersonalAI {name} is not finished",
                                      delay=ERASURE_STALLED_RETRY_SECONDS if overdue else ERASURE_RETRY_SECONDS)
        unload = _remote_unloads.get(uid)
        _set_purged(personalai, erasure.purged_condition(removed, unload))
        audit.write(erasure.erasure_record(personalai, removed, runtime.total_seconds(), now_rfc3339(), unload),
                    SETTINGS.audit_log, SETTINGS.audit_keep_days)
        _erasures_seen.pop(uid, None)
        _remote_unloads.pop(uid, None)
        _erasures_recorded[uid] = None
        while len(_erasures_recorded) > ERASURES_REMEMBERED:
            _erasures_recorded.popitem(last=False)
        _verdicts.pop((namespace, name), None)


def _unload_remote_adapters(personalai: dict[str, Any], found: dict[str, list[dict[str, Any]]]
                            ) -> erasure.RemoteUnload | None:
    """Ask the person's chat server to have the remote engine unload their adapters (None: the local
    engine, whose adapters go with its pod). The Service's ready EndpointSlice address is used, not its
    DNS name: the dev node agent has no kube-proxy, and the pod is what answers either way."""
    engine = erasure.serving_engine(personalai, SETTINGS.serving_engine)
    if engine == "local":
        return None
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    server = serving.server_name(name)
    running = any(obj["metadata"]["name"] == server for obj in found.get("Deployment", []))
    known = erasure.unload_without_asking(engine, running)
    if known is not None:
        return known
    try:
        secret = kube.get("Secret", namespace, serving.auth_secret_name(name))
        slices = kube.list_objects("EndpointSlice", namespace, {SERVICE_NAME_LABEL: server})
    except ApiException as error:  # e.g. a chart from before erasure listed EndpointSlices
        return erasure.RemoteUnload(None, f"the API refused to say where the chat server is ({error.status})",
                                    retry=True)
    token = erasure.secret_token(secret, serving.AUTH_KEY)
    if token is None:
        return erasure.RemoteUnload(None, "the chat server's token Secret is gone")
    address = ready_address(slices)
    if address is None:
        return erasure.RemoteUnload(None, "the chat server has no ready endpoint", retry=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # in-cluster: never via a proxy
    try:
        with opener.open(erasure.forget_request(address, token), timeout=FORGET_TIMEOUT_SECONDS) as response:
            return erasure.forget_answer(response.status, response.read())
    except urllib.error.HTTPError as error:
        return erasure.forget_answer(error.code, b"")
    except OSError as error:  # URLError, a refused connection, a timeout
        return erasure.RemoteUnload(None, f"the chat server could not be reached ({type(error).__name__})",
                                    retry=True)


def _erasable(namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
    """Every object and pod made for the PersonalAI that still exists, by kind."""
    labels = naming.personalai_labels(name)
    # From the API, never the cache: "all gone" lifts the finalizer, and a stale cache could say it early.
    return {kind: kube.list_objects(kind, namespace, labels, fresh=True) for kind in erasure.AWAITED_KINDS}


def _set_purged(personalai: dict[str, Any], condition: Condition) -> None:
    """Write the DataPurged condition and post its Event when its reason or message changed."""
    conditions = (personalai.get("status") or {}).get("conditions") or []
    before = find_condition(conditions, erasure.DATA_PURGED)
    if before and (before["reason"], before["message"]) == (condition["reason"], condition["message"]):
        return
    metadata = personalai["metadata"]
    kube.patch_status("PersonalAI", metadata["namespace"], metadata["name"],
                      {"conditions": set_condition(conditions, condition)})
    # Progress is for the condition alone; the outcome, or a stall, is news.
    if condition["status"] == "True":
        kube.emit_event(personalai, "Normal", erasure.DATA_PURGED, condition["message"])
    elif condition["reason"] == "ErasureStalled":
        kube.emit_event(personalai, "Warning", "ErasureStalled", condition["message"])


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
@kopf.on.field(GROUP, VERSION, "trainingruns", field="status.message", id="owner-message")
def on_run_phase(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> None:
    """A run changed phase, or its message within one (a queued run learns the scheduler's reason): bring
    its PersonalAI's Trained/Ready up to date now (Trained quotes the run's message)."""
    watch_cache.observe("TrainingRun", "MODIFIED", body)  # the reconcile reads runs from the cache
    refresh_owner(namespace_of("TrainingRun", namespace), spec.get("personalAI"))


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_COMPONENT: "server"}, id="server-status")
def on_server_deployment(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **event: Any) -> None:
    """The chat server's Deployment changed (a pod became Ready, or not): refresh Serving now."""
    watch_cache.observe("Deployment", event.get("type"), body)
    refresh_owner(namespace_of("Deployment", namespace), labels.get(naming.LABEL_PERSONALAI))
