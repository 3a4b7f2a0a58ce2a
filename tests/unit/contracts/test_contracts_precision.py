"""The precision rule the trainer and the chat server share: bf16 only where it is fast and supported."""

from __future__ import annotations

import pytest

from personalai_contracts.precision import BFLOAT16, FLOAT32, compute_dtype

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_a_gpu_with_fast_bf16_computes_in_bf16_whatever_the_quantization(quantization):
    assert compute_dtype(cuda=True, bf16_fast=True, quantization=quantization) == BFLOAT16


def test_a_cpu_with_amx_computes_an_unquantized_model_in_bf16():
    assert compute_dtype(cuda=False, bf16_fast=True, quantization="none") == BFLOAT16


def test_a_cpu_keeps_4bit_models_in_float32_where_bitsandbytes_cpu_kernels_were_measured():
    assert compute_dtype(cuda=False, bf16_fast=True, quantization="nf4") == FLOAT32


@pytest.mark.parametrize("cuda", [True, False])
def test_without_fast_bf16_everything_is_float32(cuda):
    assert compute_dtype(cuda=cuda, bf16_fast=False, quantization="none") == FLOAT32
