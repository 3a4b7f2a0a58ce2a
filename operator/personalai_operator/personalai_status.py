"""What a PersonalAI's status should say: the data verdict and the state of its current run (pure).

`assess_data(raw, key)` scores the reflections with personalai_reflections and never lets their
text reach a message: parse errors name the format, line and field (the reader's contract), and any
other failure is reported by its type alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalai_operator import naming
from personalai_operator.conditions import make_condition, set_condition
from personalai_reflections import ReflectionsError, assess_readiness, parse_reflections

MAX_ERROR_CHARS = 300


@dataclass
class DataVerdict:
    ready: bool
    reason: str
    message: str
    assessment: dict[str, Any] | None = None  # status.dataAssessment
    data_version: str | None = None


def assess_data(raw: bytes, source_name: str) -> DataVerdict:
    """Parse and score the reflections; never raises."""
    version = naming.data_version(raw)
    try:
        reflections = parse_reflections(raw, source_name)
    except ReflectionsError as error:
        return DataVerdict(False, "ReflectionsMalformed", f"Cannot read the reflections: {str(error)[:MAX_ERROR_CHARS]}",
                           data_version=version)
    except Exception as error:  # a reader bug must not crash-loop the operator, nor leak text
        return DataVerdict(False, "ReflectionsUnreadable", f"Cannot read the reflections ({type(error).__name__}).",
                           data_version=version)
    assessment = assess_readiness(reflections)
    status = assessment.model_dump(by_alias=True, mode="json")
    status["dataVersion"] = version
    if assessment.level == "insufficient":
        return DataVerdict(False, "InsufficientData", assessment.message, status, version)
    return DataVerdict(True, "Ready" if assessment.level == "minimum" else "Optimal", assessment.message, status, version)


def unavailable(reason: str, message: str) -> DataVerdict:
    """The reflections could not be fetched (no such Secret, no such key)."""
    return DataVerdict(False, reason, message)


def derive_personalai_status(verdict: DataVerdict, run: dict[str, Any] | None, status: dict[str, Any],
                             generation: int | None, now: str | None = None) -> dict[str, Any]:
    """Status fields for the PersonalAI: DataReady, Trained, Ready, the phase and the assessment."""
    conditions = list(status.get("conditions") or [])

    def put(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, make_condition(type_, value, reason, message, generation), now)

    put("DataReady", verdict.ready, verdict.reason, verdict.message)
    run_status = (run or {}).get("status") or {}
    run_phase = run_status.get("phase")
    run_name = (run or {}).get("metadata", {}).get("name")
    if not verdict.ready and run is None:
        phase = "AwaitingData"
        put("Trained", False, "AwaitingData", "Training waits until the reflections are ready.")
    elif run_phase == "Succeeded":
        phase = "Trained"
        put("Trained", True, "TrainingSucceeded", f"TrainingRun {run_name} succeeded.")
    elif run_phase == "Failed":
        phase = "Failed"
        put("Trained", False, "TrainingFailed", f"TrainingRun {run_name} failed: {run_status.get('message', '')}"[:1000])
    else:
        phase = "Training"
        reason = {"Queued": "Queued", "Running": "Training"}.get(run_phase or "", "Pending")
        detail = run_status.get("message") or "Waiting for the trainer."
        put("Trained", False, reason, f"TrainingRun {run_name}: {detail}"[:1000])
    trained = phase == "Trained"
    put("Ready", verdict.ready and trained, "Trained" if trained else "NotTrained",
        "The adapter is trained." if trained else "No trained adapter for the current data and settings yet.")

    fields: dict[str, Any] = {"phase": phase, "conditions": conditions, "observedGeneration": generation}
    if verdict.assessment is not None:
        fields["dataAssessment"] = verdict.assessment
    if run_name:
        fields["latestTrainingRun"] = run_name
    return {key: value for key, value in fields.items() if value is not None}
