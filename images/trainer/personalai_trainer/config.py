"""The trainer's config file (docs/contracts.md, "Trainer config file"): typed, camelCase, extra fields forbidden.

    config = load_config("/etc/personalai/config.json")

`check_environment` adds the checks that need to know the machine and the model (4-bit without a
working bitsandbytes, FlashAttention 2 not installed, a sequence longer than the model allows):
they fail before anything slow starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from personalai_reflections.memory import MemorySettings
from personalai_reflections.paths import resolve
from personalai_trainer.errors import ConfigError
from personalai_trainer.validation import Gate


class _Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RunConfig(_Section):
    name: str = Field(min_length=1)
    namespace: str = "default"
    personal_ai: str = Field("", alias="personalAI")
    adapter_version: str = "v1"
    data_version: str = ""


class PersonaConfig(_Section):
    display_name: str = Field(min_length=1)


class PathsConfig(_Section):
    reflections: str
    model_cache: str = "/models"
    output: str
    checkpoints: str
    current_adapter: str | None = None  # the adapter being served: scored on the same held-out set


class LoraConfig(_Section):
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)


class TrainingConfig(_Section):
    epochs: int = Field(4, ge=1, le=100)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    batch_size: Literal["auto"] | int = "auto"
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    warmup_steps: int = Field(10, ge=0)
    validation_split: float = Field(0.1, gt=0, lt=0.5)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    max_seq_length: int = Field(1024, ge=32, le=131072)
    quantization: Literal["nf4", "none"] = "nf4"
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    dynamic_batching: bool = True
    checkpoint_every_steps: int = Field(50, ge=1)
    seed: int = 42
    augment_phrasings: int = Field(2, ge=0, le=8)  # extra phrasings of each question (0: only the original)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_is_auto_or_positive(cls, value: object) -> object:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be 'auto' or a positive integer")

    @property
    def rows_per_step(self) -> int:
        """Packed rows per optimizer step; fixed for the run so the math does not depend on the GPU."""
        micro = 4 if self.batch_size == "auto" else self.batch_size  # "auto": the design's default of 4
        return micro * self.gradient_accumulation_steps


class ValidationConfig(_Section):
    """The promotion gate (validation.Gate; definitions in fidelity.py) and the evaluation's size.

    Gate defaults are what a real fine-tune clears and the untouched base model and a random model
    do not (measured with SmolLM2-135M-Instruct on the example reflections; README). null: off.
    """

    min_perplexity_gain: float | None = Field(0.2, ge=-1, le=1)  # 20% below the base model's held-out perplexity
    min_perplexity_gain_over_in_context: float | None = Field(0.0, ge=-1, le=1)  # no worse than few-shot prompting
    max_perplexity: float | None = Field(None, gt=1)  # off: absolute perplexity depends on the base model
    min_coherence: float | None = Field(0.4, ge=0, le=1)  # a random or looping model scores near 0
    min_personality_consistency: float | None = Field(0.25, ge=0, le=1)  # MiniLM cosine; unrelated text ~0.1
    min_closer_than_base: float | None = Field(None, ge=0, le=1)  # reported: 12 held-out questions make it noisy
    min_attribution: float | None = Field(None, ge=0, le=1)  # reported; chance is 0.25, the base model's 0
    min_knowledge: float | None = Field(None, ge=0, le=1)  # reported; chance is 0.25
    max_samples: int = Field(16, ge=1)  # held-out questions answered by every candidate (generation is the cost)
    max_new_tokens: int = Field(96, ge=8)  # long enough for a voice, short enough for CPU validation
    probes: int = Field(32, ge=0, le=1000)  # knowledge probes from the training answers (0: none)

    def gate(self) -> Gate:
        return Gate(**{name: getattr(self, name) for name in Gate.__dataclass_fields__})


class MemoryConfig(_Section):
    """Memory as the chat server will use it (spec.serving.memory): validation scores the served setup."""

    enabled: bool = True
    max_memories: int = Field(MemorySettings.max_memories, ge=0, le=20)
    token_budget: int = Field(MemorySettings.token_budget, ge=0, le=8000)
    min_similarity: float = Field(MemorySettings.min_similarity, ge=0, le=1)

    def settings(self) -> MemorySettings:
        return MemorySettings(enabled=self.enabled, max_memories=self.max_memories, token_budget=self.token_budget,
                              min_similarity=self.min_similarity)


class ReportingConfig(_Section):
    kubernetes: bool = True
    metrics_port: int = Field(9400, ge=0, le=65535)  # 0: no metrics server
    min_interval_seconds: float = Field(5, ge=0)


class TrainerConfig(_Section):
    run: RunConfig
    persona: PersonaConfig
    base_model: str = "mistralai/Mistral-7B-Instruct-v0.3"
    paths: PathsConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)


def parse_config(data: dict) -> TrainerConfig:
    """A TrainerConfig, or a ConfigError naming the first bad field (e.g. "training.lora.rank")."""
    try:
        return TrainerConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        # Union members add loc parts like "literal['auto']"; the user only needs the field path.
        field = ".".join(str(part) for part in first["loc"] if "[" not in str(part) and str(part) != "int") or "(top level)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 and "[" not in str(first["loc"]) else ""
        raise ConfigError(f"config field {field}: {first['msg']}{more}") from None


def load_config(path: str | Path) -> TrainerConfig:
    host_path = resolve(path)
    try:
        data = json.loads(host_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path}: not valid JSON at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a JSON object")
    return parse_config(data)


@dataclass(frozen=True)
class Machine:
    """What this machine can do, probed once (`probe_machine`) so the checks below stay pure."""

    cuda: bool
    bf16: bool
    compute_capability: tuple[int, int] | None
    bitsandbytes_error: str | None  # why 4-bit cannot run, None when it can
    flash_attention_installed: bool


def probe_machine() -> Machine:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    capability = torch.cuda.get_device_capability() if cuda else None
    try:
        import bitsandbytes  # noqa: F401  (0.50 runs 4-bit on CPU as well as CUDA)
        bnb_error = None
    except Exception as error:  # any import failure means 4-bit cannot run
        bnb_error = type(error).__name__
    return Machine(
        cuda=cuda,
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        compute_capability=capability,
        bitsandbytes_error=bnb_error,
        flash_attention_installed=importlib.util.find_spec("flash_attn") is not None,
    )


def choose_attention(requested: str, machine: Machine) -> str:
    """The attention kernel to load the model with; raises when the request cannot be met."""
    flash_ok = machine.cuda and machine.flash_attention_installed and (machine.compute_capability or (0, 0)) >= (8, 0)
    if requested == "flash_attention_2":
        if not machine.flash_attention_installed:
            raise ConfigError("training.attention is flash_attention_2 but flash-attn is not installed "
                              "(install the 'flash' extra, or use 'auto' or 'sdpa')")
        if not flash_ok:
            raise ConfigError("training.attention is flash_attention_2 but it needs a CUDA GPU of compute "
                              "capability 8.0 or newer (use 'auto' or 'sdpa')")
        return "flash_attention_2"
    if requested == "auto":
        return "flash_attention_2" if flash_ok else "sdpa"
    return requested


def check_environment(config: TrainerConfig, machine: Machine, model_max_positions: int | None) -> None:
    """Contradictory or impossible settings for this machine and model, as one clear error."""
    training = config.training
    if training.quantization == "nf4" and machine.bitsandbytes_error:
        raise ConfigError(f"training.quantization is nf4 but bitsandbytes cannot run here "
                          f"({machine.bitsandbytes_error}); set quantization to 'none'")
    choose_attention(training.attention, machine)
    if model_max_positions and training.max_seq_length > model_max_positions:
        raise ConfigError(f"training.maxSeqLength {training.max_seq_length} is over the model's limit of "
                          f"{model_max_positions} positions")
    if isinstance(training.batch_size, int) and not training.dynamic_batching and training.batch_size > 256:
        raise ConfigError("training.batchSize over 256 packed rows per micro-batch cannot fit any GPU")
