"""Kubernetes-style conditions as plain dicts: set one, read one, keep lastTransitionTime honest.

lastTransitionTime moves only when a condition's status changes, so a level-based reconcile that
writes the same condition every pass does not churn the object.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Condition = dict[str, Any]

# The condition types the operator writes, by kind. Any other type on our objects is another writer's
# (a policy controller, a person with kubectl): the operator keeps it as the API has it, never as it
# read it earlier.
OPERATOR_CONDITION_TYPES: dict[str, frozenset[str]] = {
    "PersonalAI": frozenset({"DataReady", "Trained", "Serving", "Ready", "DataPurged"}),
    "TrainingRun": frozenset({"Queued", "Running", "Succeeded", "Failed", "Validated", "GpuThrottled"}),
}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def to_rfc3339(value: str | None) -> str | None:
    """Kubernetes style ("...Z") for a timestamp the client library rendered as "+00:00"."""
    if value and value.endswith("+00:00"):
        return value[: -len("+00:00")] + "Z"
    return value


def make_condition(type_: str, status: bool | str, reason: str, message: str = "",
                   generation: int | None = None) -> Condition:
    if isinstance(status, bool):
        status = "True" if status else "False"
    condition: Condition = {"type": type_, "status": status, "reason": reason, "message": message}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def set_condition(conditions: list[Condition], new: Condition, now: str | None = None) -> list[Condition]:
    """A copy of `conditions` with `new` in place of the one of its type."""
    previous = find_condition(conditions, new["type"])
    merged = dict(new)
    if previous is not None and previous.get("status") == new["status"] and previous.get("lastTransitionTime"):
        merged["lastTransitionTime"] = previous["lastTransitionTime"]
    else:
        merged["lastTransitionTime"] = now or now_rfc3339()
    result = [c for c in conditions if c.get("type") != new["type"]]
    result.append(merged)
    return result


def merge_conditions(latest: list[Condition] | None, ours: list[Condition], owned: frozenset[str]
                     ) -> list[Condition]:
    """`latest` (the object as the API has it now) with our conditions of the `owned` types put in by type.

    Another writer's types come from `latest` whatever `ours` says (ours were copied from an older read);
    an owned type `ours` leaves out stays as it is (the operator sets conditions, it never removes one).
    A condition whose status `latest` already has keeps that lastTransitionTime."""
    mine = {condition["type"]: condition for condition in ours if condition.get("type") in owned}
    merged = []
    for condition in latest or []:
        new = mine.pop(condition.get("type"), None)
        if new is None:
            merged.append(condition)
        elif new.get("status") == condition.get("status") and condition.get("lastTransitionTime"):
            merged.append({**new, "lastTransitionTime": condition["lastTransitionTime"]})
        else:
            merged.append(new)
    return merged + list(mine.values())


def find_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def same_conditions(a: list[Condition] | None, b: list[Condition] | None) -> bool:
    """Equal ignoring order."""
    key = lambda c: c.get("type", "")  # noqa: E731
    return sorted(a or [], key=key) == sorted(b or [], key=key)
