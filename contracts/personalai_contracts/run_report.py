"""What the trainer reports into its TrainingRun's status, bounded: progress, the artifact, validation.

The trainer writes these objects (status.progress, status.artifact, status.validation) and the
CRD's status schema is generated from them, so the API server refuses a patch out of these bounds
and prunes fields they do not name. The operator reads them back with the same classes and trusts
none of the identity in them: it checks the artifact against the run's spec and decides the phase
and the verdict itself (personalai_operator.run_status, promotion).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ADAPTER_VERSION_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # a directory name: no "/", no ".."
SHA256_HEX = r"^[0-9a-f]{64}$"
# exp(MAX_REPORTED_LOSS), the trainer's cap on a diverged loss, is 2.4e17: every perplexity fits under
# this bound, which also stays inside int64 (the API server reads a whole-number bound as one).
MAX_REPORTED_LOSS = 40.0
MAX_PERPLEXITY = 1e18
MAX_LOSS = 100.0


class StatusModel(BaseModel):
    """Status objects: camelCase, tolerant of fields a newer writer adds (the API server prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _share(description: str) -> Any:
    return Field(None, ge=0.0, le=1.0, description=description)


class FidelityMetrics(StatusModel):
    """One candidate's scores on the held-out set (definitions: spec.validation, docs/validation.md)."""

    perplexity: float | None = Field(None, ge=1.0, le=MAX_PERPLEXITY,
                                     description="Held-out perplexity of the person's answers.")
    coherence: float | None = _share("Coherence, 0-1.")
    personality_consistency: float | None = _share("Similarity to the person's own answers, 0-1.")
    attribution: float | None = _share("Share of questions where the real answer ranks above generic ones.")
    knowledge: float | None = _share("Knowledge-probe accuracy, 0-1 (chance 0.25).")
    version: str | None = Field(None, max_length=63, pattern=ADAPTER_VERSION_PATTERN,
                                description="Adapter version, for the 'current' baseline.")


class ValidationResult(FidelityMetrics):
    """The adapter's validation: its metrics, its gains over the baselines, and the gate's verdict."""

    eval_loss: float | None = Field(None, ge=0.0, le=MAX_LOSS,
                                    description="Held-out loss (mean negative log-likelihood per token).")
    perplexity_gain: float | None = Field(None, ge=-MAX_PERPLEXITY, le=1.0,
                                          description="1 - adapter perplexity / base model perplexity.")
    perplexity_gain_over_in_context: float | None = Field(
        None, ge=-MAX_PERPLEXITY, le=1.0, description="1 - adapter perplexity / the in-context baseline's perplexity.")
    closer_than_base: float | None = _share("Share of held-out answers closer to the person's than the base model's.")
    closer_than_in_context: float | None = _share("The same against the base model prompted in context.")
    held_out_questions: int | None = Field(None, ge=0, le=100000, description="Held-out questions scored.")
    knowledge_probes: int | None = Field(None, ge=0, le=100000, description="Knowledge probes scored.")
    selected_epoch: int | None = Field(None, ge=1, le=100, description="The epoch whose weights the run kept.")
    memory: bool | None = Field(None, description="Whether the adapter (and base, current) were scored with memory, "
                                "as they will be served.")
    baselines: dict[str, FidelityMetrics] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 8},
        description="The same metrics for base (the untouched base model), inContext (the base "
        "model shown three of the person's answers), current (the adapter served when the run started), and with "
        "memory on, adapterWithoutMemory and baseWithoutMemory.")
    passed: bool | None = Field(None, description="The trainer's verdict; the operator recomputes it from the "
                                "metrics and the run's spec.validation before promoting.")
    reasons: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=16, description="Which thresholds were missed.")


class TrainingProgress(StatusModel):
    """Live progress the trainer patches in: numbers only, each bounded."""

    epoch: float | None = Field(None, ge=0, le=100, description="Current epoch, fractional.")
    total_epochs: int | None = Field(None, ge=1, le=100, description="Epochs planned.")
    step: int | None = Field(None, ge=0, le=10**9, description="Optimizer steps done.")
    total_steps: int | None = Field(None, ge=0, le=10**9, description="Optimizer steps planned.")
    percent: int | None = Field(None, ge=0, le=100, description="Percent complete, 0-100.")
    loss: float | None = Field(None, ge=0, le=MAX_LOSS, description="Recent training loss.")
    eval_loss: float | None = Field(None, ge=0, le=MAX_LOSS, description="Latest held-out loss.")
    tokens_per_second: float | None = Field(None, ge=0, le=1e9, description="Training throughput.")
    eta: str | None = Field(None, max_length=16, pattern=r"^[0-9hms]+$", description='Time left, e.g. "3m20s".')
    eta_seconds: int | None = Field(None, ge=0, le=10**8, description="Time left in seconds.")
    micro_batch_size: int | None = Field(None, ge=1, le=512, description="Micro-batch size in use.")
    gpu_utilization: int | None = Field(None, ge=0, le=100, description="GPU utilization, percent.")
    vram_used_mi_b: int | None = Field(None, ge=0, le=10**7, alias="vramUsedMiB", description="VRAM in use, MiB.")
    gpu_temperature_c: int | None = Field(None, ge=0, le=150, alias="gpuTemperatureC",
                                          description="GPU temperature, Celsius.")
    updated_at: str | None = Field(None, max_length=40, json_schema_extra={"format": "date-time"},
                                   description="When the trainer last reported (RFC 3339).")


class Artifact(StatusModel):
    """Where the adapter was written (the operator checks it names the run's own version and directory)."""

    location: str | None = Field(None, max_length=4096, description="Adapter directory as the trainer pod sees it.")
    manifest_sha256: str | None = Field(None, pattern=SHA256_HEX, description="sha256 of the adapter's manifest.json.")
    adapter_version: str | None = Field(None, max_length=63, pattern=ADAPTER_VERSION_PATTERN,
                                        description="Adapter version written.")


class ThermalReport(StatusModel):
    """The GPU temperature limit at work in this attempt (personalai_trainer.thermal): numbers only."""

    throttled: bool | None = Field(None, description="Whether the run has paused for the GPU's temperature.")
    throttling: bool | None = Field(None, description="Whether it is paused (or at reduced pace) now.")
    episodes: int | None = Field(None, ge=0, le=10**6, description="Times the limit was crossed.")
    paused_seconds: float | None = Field(None, ge=0, le=10**8, description="Seconds spent paused, in all.")
    last_temperature_c: int | None = Field(None, ge=0, le=150, alias="lastTemperatureC",
                                           description="Latest GPU temperature read, Celsius.")
    limit_c: int | None = Field(None, ge=0, le=150, alias="limitC", description="The limit, Celsius.")


class RunReport(StatusModel):
    """The whole of what the trainer may patch into its run's status; nothing else (phase, conditions) is its to set."""

    model_config = ConfigDict(extra="forbid")

    progress: TrainingProgress | None = None
    artifact: Artifact | None = None
    validation: ValidationResult | None = None
    thermal: ThermalReport | None = None

    def to_status(self) -> dict:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)
