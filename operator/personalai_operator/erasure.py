"""Erasure of a PersonalAI (pure): what to delete, what is still there, and how to say it is gone.

Everything the operator makes for a PersonalAI carries its labels (naming.personalai_labels), so the
inventory is a label query per kind, the same set the ownerReferences cover, but for one: the chat
server's token Secret, a random credential and no personal data, goes with the garbage collector
once the PersonalAI is gone (the operator may neither list nor delete Secrets: it could read or
remove the person's reflections). Pods are not deleted here (their Job or Deployment takes them)
but erasure waits for them, and for the volumes, whose removal is what erases the per-node files.
Messages and records name kinds, counts and object names only, never content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personalai_operator import audit
from personalai_operator.conditions import Condition, make_condition

DATA_PURGED = "DataPurged"
# Kinds listed by the PersonalAI's labels and deleted; owners first, so the garbage collector's
# cascade and ours overlap rather than race.
LISTED_KINDS = ("TrainingRun", "Job", "Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                "PersistentVolumeClaim")
AWAITED_KINDS = (*LISTED_KINDS, "Pod")  # pods leave with their Job or Deployment
MESSAGE_LIMIT = 1000

Inventory = dict[str, list[str]]  # kind -> sorted names


def inventory(found: Mapping[str, list[dict[str, Any]]]) -> Inventory:
    """Kind -> names of the objects found, kinds with none left out."""
    return {kind: sorted(obj["metadata"]["name"] for obj in objects) for kind, objects in found.items() if objects}


def to_delete(found: Mapping[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    """(kind, name) of each found object to delete: not pods, not those already being deleted."""
    return [(kind, obj["metadata"]["name"]) for kind, objects in found.items() if kind != "Pod"
            for obj in objects if not obj["metadata"].get("deletionTimestamp")]


def merge(seen: Inventory, found: Inventory) -> Inventory:
    """Everything seen over the erasure's passes (a later pass sees only what is left)."""
    kinds = [*seen, *(kind for kind in found if kind not in seen)]
    return {kind: sorted({*seen.get(kind, []), *found.get(kind, [])}) for kind in kinds}


def counts(removed: Inventory) -> dict[str, int]:
    return {kind: len(names) for kind, names in removed.items()}


def describe_counts(removed: Inventory) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counts(removed).items()) or "nothing"


def describe_remaining(remaining: Inventory) -> str:
    text = ", ".join(f"{kind} {name}" for kind, names in remaining.items() for name in names)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def purged_condition(removed: Inventory) -> Condition:
    return make_condition(DATA_PURGED, True, "Erased",
                          f"Erased {describe_counts(removed)}; nothing made for this PersonalAI remains.")


def pending_condition(remaining: Inventory, overdue: bool, timeout_seconds: float) -> Condition:
    """Erasure not finished: still going, or past its bound (it keeps retrying either way)."""
    if overdue:
        return make_condition(DATA_PURGED, False, "ErasureStalled",
                              f"Still present after {timeout_seconds:.0f} s: {describe_remaining(remaining)}.")
    return make_condition(DATA_PURGED, False, "Erasing", f"Waiting for: {describe_remaining(remaining)}.")


def erasure_record(personalai: Mapping[str, Any], removed: Inventory, duration_seconds: float,
                   now: str) -> dict[str, Any]:
    return {"time": now, "event": "erasure", **audit.subject(personalai), "removed": counts(removed),
            "durationSeconds": round(duration_seconds, 3)}
