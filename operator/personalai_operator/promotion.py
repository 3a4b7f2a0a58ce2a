"""Which adapter a PersonalAI serves (pure): promotion of validated runs, history, pinning.

A run that Succeeded and whose validation passed becomes `currentAdapter`; the one it replaces
goes to the front of `adapterHistory` (bounded). A run that failed, or trained but missed a
validation threshold, changes nothing that serves and says so in the `Trained` condition.
`spec.serving.adapterVersion` pins a version from current or history: rollback is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalai_operator.conditions import now_rfc3339

HISTORY_LIMIT = 10


@dataclass
class Promotion:
    current: dict[str, Any] | None
    history: list[dict[str, Any]]
    promoted: bool = False  # this pass made a new current adapter
    rejected_reason: str | None = None  # why the latest run was not promoted, for the Trained condition
    awaiting_validation: bool = False  # the run succeeded but has not reported its validation yet


def adapter_record(run: dict[str, Any], now: str | None = None) -> dict[str, Any]:
    status, spec = run.get("status") or {}, run.get("spec") or {}
    artifact = status.get("artifact") or {}
    record = {"version": artifact.get("adapterVersion") or spec.get("adapterVersion"),
              "trainingRun": run["metadata"]["name"], "location": artifact.get("location"),
              "dataVersion": spec.get("dataVersion"), "metrics": status.get("validation"),
              "promotedAt": now or now_rfc3339()}
    return {key: value for key, value in record.items() if value is not None}


def known_versions(current: dict[str, Any] | None, history: list[dict[str, Any]]) -> list[str]:
    return [record["version"] for record in ([current] if current else []) + history]


def promote(status: dict[str, Any], run: dict[str, Any] | None, now: str | None = None) -> Promotion:
    """Apply the latest run to (currentAdapter, adapterHistory)."""
    current = status.get("currentAdapter")
    history = list(status.get("adapterHistory") or [])
    if run is None:
        return Promotion(current, history)
    run_status = run.get("status") or {}
    if run_status.get("phase") != "Succeeded":
        return Promotion(current, history)
    validation = run_status.get("validation") or {}
    record = adapter_record(run, now)
    if record.get("version") in known_versions(current, history):
        return Promotion(current, history)
    if validation.get("passed") is None:
        return Promotion(current, history, awaiting_validation=True)
    if validation.get("passed") is not True:
        missed = "; ".join(validation.get("reasons") or []) or "validation did not pass"
        return Promotion(current, history, rejected_reason=f"adapter {record.get('version')} was not promoted: {missed}")
    if current:
        history = [current, *history][:HISTORY_LIMIT]
    return Promotion(record, history, promoted=True)


def served_version(pinned: str | None, current: dict[str, Any] | None,
                   history: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(version to serve, error): the pin when it names a known adapter, else the current one."""
    if pinned:
        if pinned in known_versions(current, history):
            return pinned, None
        return None, f"spec.serving.adapterVersion {pinned} is not a trained adapter of this PersonalAI"
    return (current or {}).get("version"), None
