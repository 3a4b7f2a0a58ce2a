"""On a lent GPU: the Mistral-7B-shaped benchmark (random weights, 4-bit) runs and our loop is faster.

    .venv/bin/python -m pytest tests/gpu -q     # skipped without CUDA
"""

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mistral_7b_shape_ours_beats_the_hf_baseline(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = benchmark
    spec.loader.exec_module(benchmark)
    results = benchmark.main(["--steps", "4", "--warmup-steps", "1", "--json", str(tmp_path / "bench.json")])
    total_mib = torch.cuda.get_device_properties(0).total_memory // 2**20
    assert results["baseline"]["peakVramMiB"] < total_mib and results["ours"]["peakVramMiB"] < total_mib
    assert results["speedup"] > 1.2, results
