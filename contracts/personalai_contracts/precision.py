"""The float type a model computes in: one rule for the trainer and the chat server, so validation
scores an adapter in the precision it will be served in.

bf16 where its matmuls are fast: a CUDA GPU that supports it, or a CPU with AMX-BF16 tiles (Sapphire
Rapids and later), where oneDNN's bf16 kernels ran the trainer's demo run 1.46x faster than float32 on
2 cores (benchmarks/cpu_precision.py). float32 elsewhere: AVX-512 bf16 without AMX was not measured. On a
CPU only for an unquantized model: bitsandbytes' CPU 4-bit kernels are the plumbing tests' path, kept
as measured. torch is imported inside the probe, so the operator imports this module without it.
"""

from __future__ import annotations

BFLOAT16, FLOAT32 = "bfloat16", "float32"


def bf16_is_fast(cuda: bool) -> bool:
    """Probe this machine (torch imported here)."""
    import torch

    if cuda:
        return bool(torch.cuda.is_bf16_supported())
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.9: absent means no
    return bool(probe and probe())


def compute_dtype(*, cuda: bool, bf16_fast: bool, quantization: str) -> str:
    """The torch dtype's name (`getattr(torch, name)`) to load and compute the base model in."""
    if bf16_fast and (cuda or quantization == "none"):
        return BFLOAT16
    return FLOAT32
