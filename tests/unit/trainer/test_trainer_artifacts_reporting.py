"""Manifest writing/verification, status payloads, rate limiting and the validation verdict."""

import json
import subprocess
import sys

import pytest

from personalai_contracts.artifacts import ArtifactError, sha256_file, verify_adapter_dir, write_manifest
from personalai_trainer.reporting import (
    JsonFormatter,
    RateLimiter,
    build_progress,
    format_eta,
    in_cluster_host,
    status_url,
)
from personalai_trainer.validation import coherence_score, repetition_ratio

pytestmark = pytest.mark.unit


@pytest.fixture
def adapter_dir(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"r": 16}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00weights")
    (tmp_path / "tokenizer.json").write_text("{}")
    return tmp_path


def test_manifest_round_trip(adapter_dir):
    digest = write_manifest(adapter_dir, adapter_version="v1-abc", base_model="m", data_version="sha256:1",
                            config={"a": 1}, metrics={"perplexity": 2.1})
    assert digest == sha256_file(adapter_dir / "manifest.json")
    manifest = verify_adapter_dir(adapter_dir)
    assert manifest["adapterVersion"] == "v1-abc"
    assert set(manifest["files"]) == {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"}


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x00other"), "adapter_model.safetensors has sha256"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is listed in the manifest but missing"),
    (lambda d: (d / "extra.bin").write_bytes(b"x"), "files the manifest does not list: extra.bin"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"files": {}})), "lacks adapterVersion"),
])
def test_any_mismatch_is_a_clear_error(adapter_dir, tamper, message):
    write_manifest(adapter_dir, adapter_version="v1", base_model="m", data_version="d", config={}, metrics={})
    tamper(adapter_dir)
    with pytest.raises(ArtifactError, match=message):
        verify_adapter_dir(adapter_dir)


def test_artifacts_module_imports_without_torch():
    code = "import sys, personalai_contracts.artifacts; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() == "False"


def test_progress_payload_matches_the_status_contract():
    progress = build_progress(step=30, total_steps=120, steps_per_epoch=30, total_epochs=4, loss=1.23456,
                              eval_loss=None, tokens_per_second=1234.56, seconds_per_step=2.0, micro_batch=4,
                              gpu={"gpuUtilization": 97, "vramUsedMiB": 20000, "gpuTemperatureC": 70},
                              updated_at="2025-01-01T00:00:00Z")
    assert progress == {"epoch": 1.0, "totalEpochs": 4, "step": 30, "totalSteps": 120, "percent": 25,
                        "loss": 1.2346, "tokensPerSecond": 1234.6, "eta": "3m00s", "etaSeconds": 180,
                        "microBatchSize": 4, "gpuUtilization": 97, "vramUsedMiB": 20000, "gpuTemperatureC": 70,
                        "updatedAt": "2025-01-01T00:00:00Z"}
    cpu = build_progress(step=1, total_steps=3, steps_per_epoch=3, total_epochs=1, loss=None, eval_loss=0.5,
                         tokens_per_second=0, seconds_per_step=None, micro_batch=1)
    assert "gpuUtilization" not in cpu and cpu["evalLoss"] == 0.5 and cpu["eta"] == "0s"


def test_eta_format():
    assert [format_eta(s) for s in (0, 45, 200, 3900)] == ["0s", "45s", "3m20s", "1h05m"]


def test_rate_limiter_bounds_patches_but_lets_forced_ones_through():
    now = [100.0]
    limiter = RateLimiter(5, clock=lambda: now[0])
    allowed = []
    for _ in range(20):  # 20 steps at 1s each
        allowed.append(limiter.allow())
        now[0] += 1
    assert allowed.count(True) == 4
    assert limiter.allow(force=True)


def test_status_url_and_host(monkeypatch):
    assert status_url("10.0.0.1:443", "default", "luke-1") == \
        "https://10.0.0.1:443/apis/personalai.dev/v1alpha1/namespaces/default/trainingruns/luke-1/status"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert in_cluster_host() == "[fd00::1]:6443"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert in_cluster_host() is None


def test_json_log_lines_carry_fields():
    import logging

    record = logging.LogRecord("t", logging.INFO, __file__, 1, "step", None, None)
    record.fields = {"step": 3, "loss": 1.5}
    line = json.loads(JsonFormatter().format(record))
    assert (line["event"], line["step"], line["loss"], line["level"]) == ("step", 3, 1.5, "info")


def test_repetition_and_coherence():
    assert repetition_ratio("I grew up by the lake with my father") == 0.0
    assert repetition_ratio("the lake the lake the lake the lake the lake") > 0.6
    assert coherence_score(0.4, 0.4, 0.0, 10) == 1.0
    assert coherence_score(0.2, 0.4, 0.0, 10) == 0.5
    assert coherence_score(0.4, 0.4, 0.5, 10) == 0.5
    assert coherence_score(0.9, 0.4, 0.0, 0) == 0.0  # empty answer


def test_prometheus_metrics_are_served_on_the_port():
    import socket
    import urllib.request

    from personalai_trainer.reporting import TrainerMetrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = TrainerMetrics(port, "luke-1")
    try:
        metrics.observe(build_progress(step=7, total_steps=10, steps_per_epoch=5, total_epochs=2, loss=0.5,
                                       eval_loss=None, tokens_per_second=321.0, seconds_per_step=1.0, micro_batch=2,
                                       gpu={"vramUsedMiB": 1234}))
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    assert 'personalai_trainer_step{run="luke-1"} 7.0' in body
    assert 'personalai_trainer_tokens_per_second{run="luke-1"} 321.0' in body
    assert 'personalai_trainer_vram_used_mib{run="luke-1"} 1234.0' in body
