"""Which adapter a PersonalAI serves (pure): promotion of validated runs, history, pinning.

A run that Succeeded, passed the validation gate, and is not worse than the current adapter on
the same held-out set (the trainer scores the current adapter as a baseline of the new run) becomes
`currentAdapter`; the one it replaces goes to the front of `adapterHistory` (bounded). A run that
trained but missed the gate or regressed changes nothing that serves: it enters the history with
`rejected` saying why, and the `Trained` condition says which metric decided, with both values.
`spec.serving.adapterVersion` pins a promoted version from current or history: rollback is one edit.
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
              "manifestSha256": artifact.get("manifestSha256"),
              "dataVersion": spec.get("dataVersion"), "metrics": status.get("validation"),
              "promotedAt": now or now_rfc3339()}
    return {key: value for key, value in record.items() if value is not None}


# What "not worse" means, in order: (field in status.validation, words, lower is better).
REGRESSION_CHECKS = (
    ("perplexity", "held-out perplexity", True),
    ("knowledge", "knowledge-probe accuracy", False),
    ("personalityConsistency", "personality consistency", False),
)


def known_versions(current: dict[str, Any] | None, history: list[dict[str, Any]],
                   include_rejected: bool = True) -> list[str]:
    records = ([current] if current else []) + history
    return [record["version"] for record in records if include_rejected or not record.get("rejected")]


def regression(validation: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """Why the new adapter is worse than `current` on the same held-out set, or None when it is not.

    The trainer scored the adapter that was current when the run started as the `current` baseline;
    if another adapter has been promoted since, there is nothing like for like to compare.
    """
    measured = (validation.get("baselines") or {}).get("current") or {}
    if not current or measured.get("version") != current.get("version"):
        return None
    for field, words, lower_is_better in REGRESSION_CHECKS:
        new, old = validation.get(field), measured.get(field)
        if new is None or old is None:
            continue
        if (new > old) if lower_is_better else (new < old):
            return (f"{words} {new:.3f} is worse than current adapter {current['version']}'s {old:.3f} "
                    "on the same held-out set")
    return None


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
    seen = next((entry for entry in history if entry["version"] == record.get("version")), None)
    if seen and seen.get("rejected"):
        return Promotion(current, history, rejected_reason=seen["rejected"])
    if seen or record.get("version") == (current or {}).get("version"):
        return Promotion(current, history)
    if validation.get("passed") is None:
        return Promotion(current, history, awaiting_validation=True)
    if validation.get("passed") is not True:
        missed = "; ".join(validation.get("reasons") or []) or "validation did not pass"
        return _reject(current, history, record, f"adapter {record.get('version')} was not promoted: {missed}")
    worse = regression(validation, current)
    if worse:
        return _reject(current, history, record, f"adapter {record.get('version')} was not promoted: {worse}")
    if current:
        history = [current, *history][:HISTORY_LIMIT]
    return Promotion(record, history, promoted=True)


def _reject(current: dict[str, Any] | None, history: list[dict[str, Any]], record: dict[str, Any],
            reason: str) -> Promotion:
    """The rejected adapter enters the history with its reason (never served unless retrained)."""
    record = {**record, "rejected": reason}
    record.pop("promotedAt", None)
    return Promotion(current, [record, *history][:HISTORY_LIMIT], rejected_reason=reason)


def served_version(pinned: str | None, current: dict[str, Any] | None,
                   history: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(version to serve, error): the pin when it names a known adapter, else the current one."""
    if pinned:
        if pinned in known_versions(current, history, include_rejected=False):
            return pinned, None
        rejected = next((entry["rejected"] for entry in history if entry["version"] == pinned and entry.get("rejected")),
                        None)
        if rejected:
            return None, f"spec.serving.adapterVersion {pinned} cannot be served: {rejected}"
        return None, f"spec.serving.adapterVersion {pinned} is not a trained adapter of this PersonalAI"
    return (current or {}).get("version"), None
