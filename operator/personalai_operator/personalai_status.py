"""What a PersonalAI's status should say, decided in one place (pure).

`assess_data(raw, key)` scores the reflections with personalai_contracts and never lets their
text reach a message: parse errors name the format, line and field (the reader's contract), and any
other failure is reported by its type alone.

`derive_personalai_status` turns everything a reconcile observed (the data verdict, the latest
run, the promotion outcome, what serving found, the token's digest) into every status field: the phase,
the DataReady/Trained/Serving/Ready conditions, the assessment, the run, the adapters, the endpoint,
status.access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalai_contracts import ReflectionsError, assess_readiness, parse_reflections
from personalai_operator import naming
from personalai_operator.conditions import make_condition, set_condition
from personalai_operator.promotion import Promotion
from personalai_operator.serving_status import DISABLED, ServingObservation

MAX_ERROR_CHARS = 300


@dataclass
class DataVerdict:
    ready: bool
    reason: str
    message: str
    assessment: dict[str, Any] | None = None  # status.dataAssessment
    data_version: str | None = None

    @property
    def trainable_version(self) -> str | None:
        """The data version to train on: set only when the reflections are ready."""
        return self.data_version if self.ready else None


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


Verdict = tuple[bool, str, str]  # a condition's (status, reason, message)


def derive_personalai_status(verdict: DataVerdict, run: dict[str, Any] | None, promotion: Promotion,
                             serving: ServingObservation, status: dict[str, Any], generation: int | None,
                             now: str | None = None, *, suspended: bool = False,
                             access: dict[str, str] | None = None) -> dict[str, Any]:
    """Every status field of the PersonalAI; `status` is the current one (conditions keep their times).

    `suspended`: spec.suspend, so no run is made (`run` is None); `access`: status.access (serving.access_status).
    An A/B test's Promote (serving.promotion) decides the adapters over `promotion`."""
    promotion = serving.promotion or promotion
    conditions = list(status.get("conditions") or [])
    trained = _suspended(promotion) if suspended else _trained(verdict, run, promotion)
    for type_, (value, reason, message) in (("DataReady", (verdict.ready, verdict.reason, verdict.message)),
                                            ("Trained", trained),
                                            ("Serving", (serving.serving, serving.reason, serving.message)),
                                            ("Ready", _ready(promotion, serving))):
        conditions = set_condition(conditions, make_condition(type_, value, reason, message, generation), now)
    fields: dict[str, Any] = {
        "phase": _phase(verdict, run, promotion, serving, suspended), "conditions": conditions,
        "observedGeneration": generation, "dataAssessment": verdict.assessment, "latestTrainingRun": _name(run),
        "currentAdapter": promotion.current, "adapterHistory": promotion.history, "endpoint": serving.endpoint,
        "access": access, "abTest": serving.ab_test, "ratings": serving.ratings,
    }
    # A merge patch: a field left out keeps its value (an endpoint outlives a pass that rolled nothing out).
    return {key: value for key, value in fields.items() if value is not None}


def invalid_spec_status(status: dict[str, Any], message: str, generation: int | None,
                        now: str | None = None) -> dict[str, Any]:
    """The spec cannot be parsed: Ready says why (field paths only); the rest waits for a valid spec."""
    conditions = set_condition(list(status.get("conditions") or []),
                               make_condition("Ready", False, "InvalidSpec", message, generation), now)
    return {"phase": "Failed", "conditions": conditions}


def _name(run: dict[str, Any] | None) -> str | None:
    return (run or {}).get("metadata", {}).get("name")


def _run_phase(run: dict[str, Any] | None) -> str | None:
    return ((run or {}).get("status") or {}).get("phase")


def _trained(verdict: DataVerdict, run: dict[str, Any] | None, promotion: Promotion) -> Verdict:
    """The validation gate's word first (it decides what may serve), then the latest run's state."""
    run_name, run_phase = _name(run), _run_phase(run)
    if promotion.awaiting_validation:
        return False, "ValidationPending", f"TrainingRun {run_name} succeeded; waiting for its validation result."
    if promotion.rejected_reason:
        return False, "ValidationFailed", promotion.rejected_reason
    if promotion.current:
        return True, "AdapterValidated", f"Adapter {promotion.current['version']} passed validation."
    if not verdict.ready and run is None:
        return False, "AwaitingData", "Training waits until the reflections are ready."
    if run_phase == "Succeeded":
        return True, "TrainingSucceeded", f"TrainingRun {run_name} succeeded."
    detail = ((run or {}).get("status") or {}).get("message")
    if run_phase == "Failed":
        return False, "TrainingFailed", f"TrainingRun {run_name} failed: {detail or ''}"[:1000]
    reason = {"Queued": "Queued", "Running": "Training"}.get(run_phase or "", "Pending")
    return False, reason, f"TrainingRun {run_name}: {detail or 'Waiting for the trainer.'}"[:1000]


def _suspended(promotion: Promotion) -> Verdict:
    """spec.suspend: Trained says so, and whether an earlier adapter stays current meanwhile."""
    lift = "Set spec.suspend to false to train."
    if promotion.current:
        return (True, "Suspended", f"Training is suspended (spec.suspend); adapter {promotion.current['version']} "
                f"stays current. {lift}")
    return False, "Suspended", f"Training is suspended (spec.suspend): the reflections are assessed, nothing is trained. {lift}"


def _ready(promotion: Promotion, serving: ServingObservation) -> Verdict:
    """Ready means chatting works, or, with serving off, that a validated adapter is there to serve."""
    if serving.serving:
        return True, "Serving", f"Adapter {serving.version} is serving."
    if promotion.current and serving.reason == DISABLED:
        return True, "Trained", f"Adapter {promotion.current['version']} is trained; serving is off."
    if promotion.current:
        return False, "NotServing", f"The chat server is not ready ({serving.reason})."
    return False, "NoValidatedAdapter", "No adapter has passed validation yet."


def _phase(verdict: DataVerdict, run: dict[str, Any] | None, promotion: Promotion,
           serving: ServingObservation, suspended: bool = False) -> str:
    if serving.serving:
        return "Serving"
    if suspended:
        return "Trained" if promotion.current else "Suspended"
    if promotion.rejected_reason and not promotion.current:
        return "Failed"  # trained, but nothing that passed the gate: a person has to act
    if not verdict.ready and run is None:
        return "AwaitingData"
    return {"Succeeded": "Trained", "Failed": "Failed"}.get(_run_phase(run) or "", "Training")
