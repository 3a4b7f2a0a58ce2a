"""What the operator believes of a TrainingRun's status before promoting from it (pure).

The trainer's token may patch its own run's status, so everything there that promotion acts on is
a claim: the phase, which adapter was written and where, and the gate's verdict. `trusted_run`
returns the run as promotion may believe it:
- Succeeded only when the run's own Job (which the trainer cannot touch) has completed;
- the artifact must name the run's spec.adapterVersion and its directory, or the run is refused;
- the validation must fit its schema, and `passed`/`reasons` are recomputed from the reported
  metrics and the run's spec.validation (personalai_contracts.gate): a forged `passed: true` is ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from personalai_contracts.gate import decide_passed, gate_from
from personalai_contracts.run_report import Artifact, ValidationResult
from personalai_contracts.trainer_config import ValidationConfig
from personalai_operator.manifests import ARTIFACTS_DIR
from personalai_operator.reflections_access import access_refusal


def job_completed_for(job: dict[str, Any] | None, run: dict[str, Any]) -> bool:
    """Whether `job` is this run's own Job (owned by its uid) and has completed."""
    if not job:
        return False
    owners = (job.get("metadata") or {}).get("ownerReferences") or []
    if not any(owner.get("uid") == run["metadata"].get("uid") for owner in owners):
        return False
    return any(condition.get("type") == "Complete" and condition.get("status") == "True"
               for condition in (job.get("status") or {}).get("conditions") or [])


def _schema_error(section: str, error: ValidationError) -> str:
    fields = sorted({".".join(str(part) for part in detail["loc"]) for detail in error.errors()})
    return f"status.{section} is out of its schema ({', '.join(fields)[:200]})"


def artifact_refusal(artifact: dict[str, Any] | None, adapter_version: str) -> str | None:
    """Why the reported artifact cannot be this run's adapter, or None when it is."""
    if not artifact:
        return "the trainer reported no artifact"
    try:
        parsed = Artifact.model_validate(artifact)
    except ValidationError as error:
        return _schema_error("artifact", error)
    if parsed.adapter_version != adapter_version:
        return (f"status.artifact.adapterVersion {parsed.adapter_version} is not the run's "
                f"spec.adapterVersion {adapter_version}")
    expected = f"{ARTIFACTS_DIR}/{adapter_version}"
    if parsed.location != expected:
        return f"status.artifact.location is not {expected}, the run's own adapter directory"
    return None


def verdict(validation: dict[str, Any], spec_validation: dict[str, Any] | None) -> dict[str, Any]:
    """The reported validation with the operator's own `passed` and `reasons`."""
    try:
        ValidationResult.model_validate(validation)
    except ValidationError as error:
        return {**validation, "passed": False, "reasons": [_schema_error("validation", error)]}
    passed, reasons = decide_passed(validation, gate_from(ValidationConfig.model_validate(spec_validation or {})))
    return {**validation, "passed": passed, "reasons": reasons}


def trusted_run(run: dict[str, Any] | None, job: dict[str, Any] | None,
                recorded_versions: Collection[str] = ()) -> dict[str, Any] | None:
    """The run with its status reduced to what promotion may believe (see the module docstring).

    `recorded_versions`: adapters the PersonalAI already holds (current, history). A run whose Job was
    cleaned up after it finished keeps its outcome if promotion checked it while the Job was there.
    """
    if run is None:
        return None
    run = copy.deepcopy(run)
    status = run.setdefault("status", {})
    spec = run.get("spec") or {}
    if job is None and spec.get("adapterVersion") in recorded_versions:
        return run  # decided earlier, from the Job; promotion will not act on it again
    if not job_completed_for(job, run):
        if status.get("phase") == "Succeeded":
            status["phase"] = "Running"  # claimed, not shown by the Job: nothing to promote yet
        return run
    status["phase"] = "Succeeded"
    validation = status.get("validation") or {}
    if not status.get("artifact") and not validation:
        status["validation"] = {}  # nothing reported (yet): promotion waits, as for a report in flight
        return run
    refusal = artifact_refusal(status.get("artifact"), spec.get("adapterVersion", ""))
    if refusal:
        status["artifact"] = {"adapterVersion": spec.get("adapterVersion")}
        status["validation"] = {**validation, "passed": False, "reasons": [refusal]}
    elif any(key not in ("passed", "reasons") for key in validation):
        status["validation"] = verdict(validation, spec.get("validation"))
    else:  # no metrics yet: the trainer writes them with the artifact, so this is a moment's wait
        status["validation"] = {}
    return run


def run_refusal(run: dict[str, Any], personalai: dict[str, Any] | None,
                reflections_metadata: dict[str, Any] | None) -> str | None:
    """Why the operator will not start a trainer for `run`, or None: the run must be its PersonalAI's own.

    Admission (the chart's policy) already refuses TrainingRuns not made by the operator; this holds
    where that policy is off. `reflections_metadata` is the run's Secret's (or ConfigMap's) metadata.
    """
    spec = run.get("spec") or {}
    owner = spec.get("personalAI")
    if personalai is None:
        return f"spec.personalAI: PersonalAI {owner} does not exist in this namespace"
    uid = personalai["metadata"].get("uid")
    if not any(ref.get("uid") == uid for ref in run["metadata"].get("ownerReferences") or []):
        return (f"metadata.ownerReferences: TrainingRun is not owned by PersonalAI {owner}; TrainingRuns are "
                "made by the operator from a PersonalAI (edit its spec.training instead)")
    if spec.get("reflections") != (personalai.get("spec") or {}).get("reflections"):
        return f"spec.reflections is not PersonalAI {owner}'s spec.reflections"
    status = personalai.get("status") or {}
    for record in [status.get("currentAdapter") or {}, *(status.get("adapterHistory") or [])]:
        if record.get("version") == spec.get("adapterVersion") and record.get("trainingRun") != run["metadata"]["name"]:
            return (f"spec.adapterVersion {spec.get('adapterVersion')} is already PersonalAI {owner}'s adapter "
                    f"from TrainingRun {record.get('trainingRun')}")
    reflections = spec.get("reflections") or {}
    kind, ref = ("Secret", reflections["secretRef"]) if reflections.get("secretRef") else \
        ("ConfigMap", reflections.get("configMapRef") or {})
    return access_refusal(kind, ref.get("name", ""), reflections_metadata, str(owner))
