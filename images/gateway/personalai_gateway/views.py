"""The answers of the training routes, built from a PersonalAI and its TrainingRuns as the API server
returns them (plain dicts). Pure: the routes fetch, these shape. Numbers and names only: a PersonalAI's
status never holds reflection text, and nothing here adds any.
"""

from __future__ import annotations

from personalai_contracts.names import DEFAULT_MODE_NAMES
from personalai_contracts.readiness import MINIMUM, OPTIMAL, ReadinessThresholds
from personalai_contracts.run_report import TrainingProgress, ValidationResult

TERMINAL_PHASES = ("Succeeded", "Failed")


def _thresholds(bar: ReadinessThresholds) -> dict:
    return {"responses": bar.responses, "averageWords": bar.average_words, "categories": bar.categories,
            "totalWords": bar.total_words}


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def data_ready(personalai: dict) -> bool:
    return condition(personalai, "DataReady").get("status") == "True"


def readiness(personalai: dict) -> dict:
    """GET /api/training/start-personal-ai: the data assessment against the minimum and optimal levels."""
    status = personalai.get("status") or {}
    assessment = status.get("dataAssessment")
    ready = condition(personalai, "DataReady")
    return {
        "userId": personalai["metadata"]["name"],
        "displayName": (personalai.get("spec") or {}).get("displayName"),
        "ready": data_ready(personalai),
        "suspended": bool((personalai.get("spec") or {}).get("suspend", False)),
        "assessed": assessment is not None,
        "dataAssessment": assessment,
        "message": (assessment or {}).get("message") or ready.get("message")
        or "The reflections have not been assessed yet.",
        "levels": {"minimum": _thresholds(MINIMUM), "optimal": _thresholds(OPTIMAL)},
    }


def latest_run(runs: list[dict]) -> dict | None:
    """The person's newest TrainingRun (creation time, then name)."""
    live = [r for r in runs if not (r.get("metadata") or {}).get("deletionTimestamp")]
    return max(live, key=lambda r: (r["metadata"].get("creationTimestamp", ""), r["metadata"]["name"]), default=None)


def progress_event(run: dict) -> dict:
    """One metrics event: the run's phase and the trainer's latest progress, in the brief's names."""
    status = run.get("status") or {}
    progress = TrainingProgress.model_validate(status.get("progress") or {})
    phase = status.get("phase") or "Pending"
    return {
        "trainingRun": run["metadata"]["name"],
        "phase": phase,
        "epoch": progress.epoch, "totalEpochs": progress.total_epochs,
        "step": progress.step, "totalSteps": progress.total_steps, "percent": progress.percent,
        "loss": progress.loss, "evalLoss": progress.eval_loss, "tokensPerSecond": progress.tokens_per_second,
        "gpuUtilization": progress.gpu_utilization,  # percent
        "vramUsage": progress.vram_used_mi_b,  # MiB
        "temperature": progress.gpu_temperature_c,  # Celsius
        "estimatedTimeRemaining": progress.eta_seconds,  # seconds
        "updatedAt": progress.updated_at,
        "final": phase in TERMINAL_PHASES,
    }


def training_status(personalai: dict, run: dict | None) -> dict:
    """GET /api/training/status: the latest run's phase, progress and validation, or "no run yet"."""
    status = personalai.get("status") or {}
    adapter = status.get("currentAdapter") or {}
    answer = {"userId": personalai["metadata"]["name"], "phase": status.get("phase"),
              "suspended": bool((personalai.get("spec") or {}).get("suspend", False)),
              "currentAdapter": {"version": adapter["version"], "promotedAt": adapter.get("promotedAt")}
              if adapter.get("version") else None}
    if run is None:
        return {**answer, "state": "NoRun", "trainingRun": None,
                "message": "No training run yet: start one with POST /api/training/start-personal-ai."}
    run_status = run.get("status") or {}
    validation = run_status.get("validation")
    return {**answer, "state": run_status.get("phase") or "Pending", "trainingRun": run["metadata"]["name"],
            "message": run_status.get("message"),
            "startTime": run_status.get("startTime"), "completionTime": run_status.get("completionTime"),
            "progress": progress_event(run),
            "validation": ValidationResult.model_validate(validation).model_dump(by_alias=True, exclude_none=True)
            if validation else None}


def personality_modes(serving: dict) -> tuple[list[dict], str]:
    """The modes a chat may ask for and the one used when it names none, as the operator configures the
    chat server (serving.server_config): spec.serving.personalityModes add to the built-in modes, or
    with modesPolicy replace take their place. Names and descriptions only, never a system prompt."""
    own = serving.get("personalityModes") or {}
    names = list(own) if serving.get("modesPolicy") == "replace" and own else \
        [*DEFAULT_MODE_NAMES, *(name for name in own if name not in DEFAULT_MODE_NAMES)]
    default = serving.get("defaultMode") or (next(iter(own)) if own else DEFAULT_MODE_NAMES[0])
    return [{"name": name, "description": (own.get(name) or {}).get("description")} for name in names], default


def me(personalai: dict) -> dict:
    """GET /api/me: whose AI the token opens, and the modes its chat offers."""
    spec = personalai.get("spec") or {}
    modes, default = personality_modes(spec.get("serving") or {})
    return {"userId": personalai["metadata"]["name"], "displayName": spec.get("displayName"),
            "personalityModes": modes, "defaultMode": default}
