"""The brief's start `config`, mapped onto a PersonalAI's spec.training, and the start answer's config.

    {"config": {"epochs": 3, "enableFlashAttention2": true}}  ->  {"epochs": 3, "attention": "flash_attention_2"}

Only the knobs given change. Their bounds are the trainer config's own (personalai_contracts
TrainingConfig): the merged spec.training is validated with it, so a bad value is refused here
with the brief's field name, before the API server would refuse it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, ValidationError
from pydantic.alias_generators import to_camel

from personalai_contracts.trainer_config import DEFAULT_BASE_MODEL, TrainingConfig

# The brief's knob -> spec.training's field (enableFlashAttention2 is mapped below: it is a choice of kernel).
DIRECT = {"epochs": "epochs", "learningRate": "learningRate", "batchSize": "batchSize",
          "enableDynamicBatching": "dynamicBatching", "gradientAccumulationSteps": "gradientAccumulationSteps",
          "warmupSteps": "warmupSteps", "validationSplit": "validationSplit"}
BRIEF_FIELD = {**{field: knob for knob, field in DIRECT.items()}, "attention": "enableFlashAttention2"}


class ConfigError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class BriefConfig(BaseModel):
    """The brief's start config; every knob optional, unknown ones refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    epochs: StrictInt | None = None
    learning_rate: StrictFloat | StrictInt | None = None
    batch_size: StrictInt | Literal["auto"] | None = None
    enable_flash_attention2: StrictBool | None = None
    enable_dynamic_batching: StrictBool | None = None
    gradient_accumulation_steps: StrictInt | None = None
    warmup_steps: StrictInt | None = None
    validation_split: StrictFloat | None = None


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: BriefConfig = BriefConfig()
    userId: str | None = None  # noqa: N815  (the brief's name; must be the token's own person)


def training_changes(config: BriefConfig) -> dict:
    """The spec.training fields the config sets (camelCase, as stored)."""
    given = config.model_dump(by_alias=True, exclude_none=True)
    changes = {DIRECT[knob]: value for knob, value in given.items() if knob in DIRECT}
    if "enableFlashAttention2" in given:
        # Off: SDPA, the kernel "auto" falls back to; on: FlashAttention 2 (the trainer fails clearly without it).
        changes["attention"] = "flash_attention_2" if given["enableFlashAttention2"] else "sdpa"
    return changes


def merged_training(current: dict, changes: dict) -> dict:
    """spec.training with `changes`, checked against the trainer config's bounds and rules."""
    merged = {**current, **changes}
    try:
        TrainingConfig.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "config"
        raise ConfigError(f"config.{BRIEF_FIELD.get(field, field)}", first["msg"]) from None
    if merged.get("batchSize", "auto") == "auto" and merged.get("dynamicBatching", True) is False:
        knob = "enableDynamicBatching" if "dynamicBatching" in changes else "batchSize"
        raise ConfigError(f"config.{knob}", 'batchSize "auto" needs dynamic batching: the dynamic batcher picks the size')
    return merged


def answer_config(spec: dict) -> dict:
    """The start answer's `config`: the base model, the method and precision, and the knobs in effect."""
    training = spec.get("training") or {}
    quantized = training.get("quantization", "nf4") == "nf4"
    attention = training.get("attention", "auto")
    return {
        "baseModel": spec.get("baseModel", DEFAULT_BASE_MODEL),
        "method": "QLoRA" if quantized else "LoRA",
        # QLoRA: the frozen base in 4-bit NormalFloat, the adapters trained in bf16 (on the CPU: fp32).
        "precision": "4-bit NF4 base, bf16 adapters" if quantized else "bf16",
        **{knob: training[field] for knob, field in DIRECT.items() if field in training},
        # "auto": FlashAttention 2 where the trainer finds it installed on a capable GPU.
        "enableFlashAttention2": "auto" if attention == "auto" else attention == "flash_attention_2",
    }
