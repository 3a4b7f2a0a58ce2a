"""CI smoke for benchmarks/train_throughput.py --tiny: both loops run on the CPU and the report is complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[3]


def test_tiny_benchmark_runs_both_loops_and_reports_the_ratio(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--tiny", "--examples",
                           "64", "--json", str(out)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "speedup (ours / baseline tokens/s):" in done.stdout
    results = json.loads(out.read_text())
    assert results["baseline"]["tokensPerSecond"] > 0 and results["ours"]["tokensPerSecond"] > 0
    assert results["baseline"]["gradientCheckpointing"] is True
    assert results["ours"]["packedRows"] < 64  # packing put several examples in a row
    assert results["speedup"] == pytest.approx(results["ours"]["tokensPerSecond"] / results["baseline"]["tokensPerSecond"])
