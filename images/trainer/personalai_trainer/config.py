"""Reading the trainer's config file, whose schema is the shared contract (personalai_contracts.trainer_config).

    config = load_config("/etc/personalai/config.json")

`check_environment` adds the checks that need to know the machine and the model (4-bit without a
working bitsandbytes, FlashAttention 2 not installed, a sequence longer than the model allows):
they fail before anything slow starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from personalai_contracts import precision
from personalai_contracts.paths import resolve
from personalai_contracts.trainer_config import TrainerConfig
from personalai_trainer.errors import ConfigError


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
    bf16: bool  # bf16 matmuls run fast here (personalai_contracts.precision)
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
        bf16=precision.bf16_is_fast(cuda),
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
