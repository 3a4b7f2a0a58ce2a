"""Artifact retention on the PersonalAI's resync: record what finished prune Jobs removed, then start
the next one for what has expired (artifact_retention decides; manifests builds the Job).

One prune Job at a time, and none while any Job of the PersonalAI (a trainer) is still going or a
run has yet to end: they all mount the same ReadWriteOnce volume, and a run's artifacts are not
settled until it ends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError

from personalai_operator import artifact_retention, audit, kube, manifests, naming
from personalai_operator.conditions import now_rfc3339
from personalai_operator.handlers.common import SETTINGS, object_lock
from personalai_operator.models import PersonalAISpec


def enforce_artifact_retention(namespace: str, name: str) -> None:
    if SETTINGS.artifacts_volume != "pvc":
        return  # an emptyDir goes with its pod: nothing outlives a run
    with object_lock("PersonalAI", namespace, name):
        personalai = kube.get("PersonalAI", namespace, name)
        if personalai is None or personalai["metadata"].get("deletionTimestamp"):
            return
        try:
            days = PersonalAISpec.model_validate(personalai.get("spec") or {}).retention.artifact_days
        except ValidationError:
            return  # the PersonalAI's reconcile reports its spec
        # Read from the cache; before anything that cannot be undone (a record, a prune), from the API.
        if _prune_decision(personalai, days, fresh=False):
            personalai = kube.get("PersonalAI", namespace, name, fresh=True)
            if personalai is not None:
                _prune_decision(personalai, days, fresh=True)


def _prune_decision(personalai: dict[str, Any], days: int, fresh: bool) -> bool:
    """Record finished prunes and start the next one, on reads from the API when `fresh`; without it,
    nothing is written: returns whether the fresh reads should decide (there is something to do)."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    labels = naming.personalai_labels(name)
    jobs = kube.list_objects("Job", namespace, labels, fresh=fresh)
    ledger = artifact_retention.read_ledger(
        kube.get("ConfigMap", namespace, artifact_retention.ledger_name(name), fresh=fresh))
    removed = artifact_retention.newly_pruned(jobs, ledger)
    if removed and not fresh:
        return True
    ledger = _record_pruned(personalai, removed, ledger, days)
    runs = kube.list_objects("TrainingRun", namespace, labels, fresh=fresh)
    if any(not artifact_retention.job_finished(job) for job in jobs) or \
            any(artifact_retention.run_end(run) is None for run in runs):
        return False
    expired = artifact_retention.expired_artifacts(personalai.get("status") or {}, runs, days,
                                                   dt.datetime.now(dt.UTC), ledger)
    if expired and not fresh:
        return True
    if expired:
        servers = kube.list_objects("Pod", namespace, {**labels, naming.LABEL_COMPONENT: "server"}, fresh=True)
        kube.create_if_absent(manifests.build_prune_job(personalai, artifact_retention.pruning(expired),
                                                        SETTINGS, artifact_retention.volume_node(servers)))
    return False

def _record_pruned(personalai: dict[str, Any], removed: dict[str, str], ledger: dict[str, str],
                   days: int) -> dict[str, str]:
    """The ledger with `removed` added: written first (it makes this once per prune), then the Event and
    the audit record."""
    if not removed:
        return ledger
    ledger = {**ledger, **removed}
    kube.apply(manifests.build_retention_ledger(personalai, ledger))
    kube.emit_event(personalai, "Normal", "ArtifactsPruned", artifact_retention.pruned_message(removed, days))
    audit.write(artifact_retention.retention_record(personalai, removed, days, now_rfc3339()),
                SETTINGS.audit_log, SETTINGS.audit_keep_days)
    return ledger
