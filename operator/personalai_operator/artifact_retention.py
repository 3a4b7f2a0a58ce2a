"""Which artifacts on a PersonalAI's volume have outlived `spec.retention.artifactDays` (pure).

The artifacts volume (PVC `<name>-artifacts`, mounted at /artifacts) holds, per TrainingRun, the
adapter it wrote, `<adapterVersion>/`, and its checkpoints, `checkpoints/<run>/`
(manifests.build_trainer_config); nothing else. In use, so never expired: the current adapter and
the rollback history (promoted adapters; a rejected one is recorded in the history with its reason,
but cannot be served, so its files may go), and everything of a run that has not ended. An
artifact's age counts from its run's end: the status records no time for a version leaving the
history, and a version's run ends before it can enter it. artifactDays 0: kept until the PersonalAI
is deleted.

What was pruned is kept in a ledger ConfigMap, path -> the run end it was pruned for, so a pruned
path is not named again, unless its run ran again (a retry or a resumed run writes it anew).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from personalai_operator import audit, naming
from personalai_operator.conditions import find_condition, to_rfc3339
from personalai_operator.promotion import known_versions
from personalai_operator.run_status import PHASES_DONE

ADAPTER, CHECKPOINTS = "adapter", "checkpoints"
CHECKPOINTS_DIR = "checkpoints"  # manifests.build_trainer_config's paths.checkpoints, under the volume
PRUNE_COMPONENT = "artifact-prune"  # the prune Job's component label
PRUNING_ANNOTATION = "personalai.dev/pruning"  # on the prune Job: {path: run end}, what it removes
LEDGER_KEY = "pruned.json"


@dataclass(frozen=True)
class Artifact:
    kind: str  # ADAPTER | CHECKPOINTS
    run: str  # the TrainingRun that made it
    name: str  # the adapter version, or the run's name for checkpoints
    ended: str  # RFC 3339: when its run ended, the moment it stopped being of use

    @property
    def path(self) -> str:
        """Relative to the volume's root: what the prune Job is told to remove."""
        return self.name if self.kind == ADAPTER else f"{CHECKPOINTS_DIR}/{self.name}"


def run_end(run: Mapping[str, Any]) -> str | None:
    """When a finished run ended (its Job's completion; a superseded run's stop), None while it has not."""
    status = run.get("status") or {}
    if status.get("phase") not in PHASES_DONE:
        return None
    failed = find_condition(status.get("conditions"), "Failed") or {}
    return to_rfc3339(status.get("completionTime") or failed.get("lastTransitionTime"))


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def in_use(status: Mapping[str, Any]) -> set[str]:
    """Adapter versions that serve or may serve again: the current one and the promoted history."""
    return set(known_versions(status.get("currentAdapter"), status.get("adapterHistory") or [],
                              include_rejected=False))


def run_artifacts(run: Mapping[str, Any], ended: str) -> list[Artifact]:
    name = run["metadata"]["name"]
    version = ((run.get("status") or {}).get("artifact") or {}).get("adapterVersion") \
        or (run.get("spec") or {}).get("adapterVersion")
    found = [Artifact(ADAPTER, name, version, ended)] if version else []
    return [*found, Artifact(CHECKPOINTS, name, name, ended)]


def expired_artifacts(status: Mapping[str, Any], runs: Iterable[Mapping[str, Any]], artifact_days: int,
                      now: dt.datetime, pruned: Mapping[str, str] | None = None) -> list[Artifact]:
    """The artifacts older than `artifact_days` that nothing uses and the ledger `pruned` does not list."""
    if artifact_days == 0:
        return []
    keep = in_use(status)
    cutoff = now - dt.timedelta(days=artifact_days)
    pruned = pruned or {}
    expired = []
    for run in sorted(runs, key=lambda run: run["metadata"]["name"]):
        ended = run_end(run)
        if ended is None or _parse(ended) > cutoff:
            continue
        expired += [artifact for artifact in run_artifacts(run, ended)
                    if not (artifact.kind == ADAPTER and artifact.name in keep)
                    and pruned.get(artifact.path) != artifact.ended]
    return expired


# ---- the prune Job and the ledger ----------------------------------------------------------------

def pruning(artifacts: Iterable[Artifact]) -> dict[str, str]:
    """What a prune Job removes: path -> the run end it is pruned for (its annotation, then the ledger's)."""
    return {artifact.path: artifact.ended for artifact in artifacts}


def pruning_digest(paths: Mapping[str, str]) -> str:
    """Names the prune Job: the same set is one Job (a failed one is not retried until its TTL removes it)."""
    return hashlib.sha256(json.dumps(paths, sort_keys=True).encode()).hexdigest()[:8]


def job_finished(job: Mapping[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job has ended, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return None


def is_prune_job(job: Mapping[str, Any]) -> bool:
    return (job["metadata"].get("labels") or {}).get(naming.LABEL_COMPONENT) == PRUNE_COMPONENT


def ledger_name(personalai: str) -> str:
    return f"{personalai}-artifact-retention"


def _paths_from_json(text: str | None) -> dict[str, str]:
    try:
        paths = json.loads(text or "{}")
    except ValueError:
        return {}  # unreadable: at worst a pruned path is named again, and removing it twice is harmless
    return {str(path): str(ended) for path, ended in paths.items()} if isinstance(paths, dict) else {}


def volume_node(server_pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The node where the PersonalAI's chat server holds the volume (None: no server pod is placed)."""
    nodes = sorted(pod["spec"]["nodeName"] for pod in server_pods
                   if (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get("deletionTimestamp"))
    return nodes[0] if nodes else None


def read_ledger(config_map: Mapping[str, Any] | None) -> dict[str, str]:
    return _paths_from_json(((config_map or {}).get("data") or {}).get(LEDGER_KEY))


def newly_pruned(jobs: Iterable[Mapping[str, Any]], ledger: Mapping[str, str]) -> dict[str, str]:
    """What completed prune Jobs removed that the ledger does not record yet."""
    done: dict[str, str] = {}
    for job in jobs:
        if is_prune_job(job) and job_finished(job) == "Complete":
            removed = _paths_from_json((job["metadata"].get("annotations") or {}).get(PRUNING_ANNOTATION))
            done |= {path: ended for path, ended in removed.items() if ledger.get(path) != ended}
    return done


def describe(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(adapter versions, run names of checkpoints) of relative paths: identifiers, never content."""
    adapters: list[str] = []
    checkpoints: list[str] = []
    for path in sorted(paths):
        head, _, run = path.partition("/")
        (checkpoints if head == CHECKPOINTS_DIR and run else adapters).append(run or head)
    return adapters, checkpoints


def pruned_message(paths: Iterable[str], artifact_days: int) -> str:
    adapters, checkpoints = describe(paths)
    parts = ([f"adapters {', '.join(adapters)}"] if adapters else []) + \
        ([f"checkpoints of TrainingRuns {', '.join(checkpoints)}"] if checkpoints else [])
    return (f"Removed, where present, what was older than retention.artifactDays ({artifact_days}) and not in "
            f"use: {'; '.join(parts)}.")


def retention_record(personalai: Mapping[str, Any], paths: Iterable[str], artifact_days: int,
                     now: str) -> dict[str, Any]:
    adapters, checkpoints = describe(paths)
    return {"time": now, "event": "artifact-retention", **audit.subject(personalai), "artifactDays": artifact_days,
            "adapters": adapters, "checkpoints": checkpoints}
