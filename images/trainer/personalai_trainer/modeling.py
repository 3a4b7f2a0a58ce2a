"""The QLoRA model: base in 4-bit NF4 (double quantization, bf16 compute) with LoRA on every linear layer.

Choices, each with its reason:
- NF4 + double quantization: a 7B base in about 4 GB, so it trains on one consumer GPU.
- compute dtype bf16 on GPUs that have it; float32 elsewhere (CPU): CPU bf16 matmuls are emulated on
  most x86 parts (slower, not faster) and tiny CPU runs are about correctness, not speed.
- no `prepare_model_for_kbit_training`: it upcasts embeddings, norms and lm_head to float32 (more
  memory, slower lm_head matmul) and forces checkpointing on; we only make inputs require grad when
  checkpointing, which is all it is needed for.
- LoRA on all linear projections (peft "all-linear": q,k,v,o,gate,up,down; not lm_head).
- FlashAttention 2 when installed and supported, else PyTorch SDPA (config.choose_attention).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from personalai_contracts import precision
from personalai_contracts.paths import resolve
from personalai_contracts.trainer_config import LoraConfig, TrainerConfig
from personalai_trainer.config import Machine
from personalai_trainer.errors import ConfigError


def resolve_base_model(config: TrainerConfig) -> tuple[str, str | None]:
    """(what to pass to from_pretrained, cache_dir): a local dir, the model cache's copy, or a hub id."""
    local = resolve(config.base_model)
    if local.is_dir():
        return str(local), None
    cache = resolve(config.paths.model_cache)
    cached = cache / config.base_model
    if cached.is_dir():
        return str(cached), None
    hub_folder = "models--" + config.base_model.replace("/", "--")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not any((root / hub_folder).is_dir()
                                                          for root in (cache, cache / "hub")):
        raise ConfigError(f"baseModel {config.base_model}: no local model dir, no copy under paths.modelCache "
                          f"({config.paths.model_cache}), and downloads are off (HF_HUB_OFFLINE=1): put the model "
                          "in the model cache first")
    return config.base_model, str(cache)


def choose_compute_dtype(machine: Machine, quantization: str) -> torch.dtype:
    """The chat server's rule too (personalai_contracts.precision): validation scores what is served."""
    return getattr(torch, precision.compute_dtype(cuda=machine.cuda, bf16_fast=machine.bf16,
                                                 quantization=quantization))


def load_base_model(
    source: str, *, quantization: str, attention: str, dtype: torch.dtype, device: str,
    cache_dir: str | None = None,
):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"attn_implementation": attention, "dtype": dtype, "cache_dir": cache_dir,
                    "low_cpu_mem_usage": True}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=torch.uint8,
        )
        kwargs["device_map"] = {"": device}  # quantization happens as each shard lands on the device
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if quantization != "nf4":
        model.to(device)
    elif device == "cpu":
        keep_4bit_weights_trainable_on_cpu(model)
    model.config.use_cache = False  # a KV cache in training costs memory and disables packed-sequence masks
    return model


def keep_4bit_weights_trainable_on_cpu(model) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference the first time the model runs in eval.

    The repacked layout goes through a kernel with no autograd (bitsandbytes 0.50): after a validation
    pass, gradients would silently stop flowing through the base layers to earlier LoRA weights.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def apply_lora(model, lora: LoraConfig, *, gradient_checkpointing: bool):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    set_gradient_checkpointing(model, gradient_checkpointing)
    peft_config = PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    # LoRA weights in float32 for stable Adam updates; they are a fraction of a percent of the model.
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def set_gradient_checkpointing(model, enabled: bool) -> None:
    """Turn recomputation on or off; with frozen embeddings the inputs must require grad for it to work."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    elif base.is_gradient_checkpointing:
        base.gradient_checkpointing_disable()


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def model_max_positions(source: str, cache_dir: str | None) -> int | None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, cache_dir=cache_dir)
    return getattr(config, "max_position_embeddings", None)


def save_adapter(model, tokenizer, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
