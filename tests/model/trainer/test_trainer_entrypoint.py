"""`python -m personalai_trainer --config` end to end on the tiny model: adapter, manifest, validation,
resume after a kill, and one-line errors for bad data and bad config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from personalai_contracts.artifacts import verify_adapter_dir
from personalai_trainer.__main__ import main as trainer_main

pytestmark = pytest.mark.model

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_trains_validates_and_saves_a_verifiable_adapter(write_config, trainer_command, read_events, tmp_path,
                                                         tiny_model_dir, reflections):
    config = write_config({"epochs": 2})
    done = subprocess.run([*trainer_command, str(config)], capture_output=True, text=True, timeout=240, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    events = read_events(done.stdout)
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["loss"] < steps[0]["loss"]

    manifest = verify_adapter_dir(tmp_path / "out")
    assert manifest["adapterVersion"] == "v1-test" and manifest["dataVersion"] == "sha256:test"
    for key in ("evalLoss", "perplexity", "coherence", "personalityConsistency"):
        assert isinstance(manifest["metrics"][key], float)
    [validation] = [e for e in events if e["event"] == "validation"]
    assert validation["passed"] is False and validation["reasons"]  # a random tiny model is not a person yet
    assert manifest["config"]["training"]["quantization"] == "nf4"

    # Personal text never reaches the log.
    for reflection in reflections:
        assert reflection["answer"][:40] not in done.stdout + done.stderr

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Where did you grow up?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > ids.shape[1]


def test_killed_run_resumes_from_its_checkpoint_at_the_same_step(write_config, trainer_command, read_events,
                                                                 tmp_path):
    config = write_config({"epochs": 12, "batchSize": 1, "maxSeqLength": 256, "checkpointEverySteps": 5,
                           "augmentPhrasings": 0, "quantization": "none"})
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen([*trainer_command, str(config)], stdout=log, stderr=subprocess.STDOUT, env=ENV)
        try:
            deadline = time.monotonic() + 120
            checkpoint_step = None
            while time.monotonic() < deadline and first.poll() is None:
                events = read_events(log_path.read_text())
                saved = [e["step"] for e in events if e["event"] == "checkpoint"]
                if saved and any(e["event"] == "step" and e["step"] > saved[-1] + 1 for e in events):
                    checkpoint_step = saved[-1]
                    break
                time.sleep(0.05)
            assert checkpoint_step, "no checkpoint before the deadline (or the run finished first)"
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait(timeout=30)
    killed_events = read_events(log_path.read_text())
    newest = max(e["step"] for e in killed_events if e["event"] == "checkpoint")
    killed_losses = {e["step"]: e["loss"] for e in killed_events if e["event"] == "step"}

    second = subprocess.run([*trainer_command, str(config)], capture_output=True, text=True, timeout=240, env=ENV)
    assert second.returncode == 0, second.stderr[-2000:]
    events = read_events(second.stdout)
    [resumed] = [e for e in events if e["event"] == "resumed"]
    assert resumed["step"] == newest
    steps = [e for e in events if e["event"] == "step"]
    assert steps[0]["step"] == newest + 1 and steps[-1]["step"] == resumed["totalSteps"]
    # Same weights, optimizer, data order and RNG: the step after the checkpoint gives the same loss.
    if newest + 1 in killed_losses:
        assert steps[0]["loss"] == pytest.approx(killed_losses[newest + 1], rel=1e-4)
    verify_adapter_dir(tmp_path / "out")


def test_bad_data_exits_non_zero_with_one_line_naming_the_line(write_config, trainer_command, reflections):
    lines = [json.dumps(r) for r in reflections[:5]]
    lines[2] = '{"question": "Where?", "answer": "a private thing about my sister"}'
    config = write_config(reflections_text="\n".join(lines))
    done = subprocess.run([*trainer_command, str(config)], capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "personalai-trainer: error: paths.reflections: JSONL line 3: missing field 'category' "
        "(or an alias: category, topic, theme, section, tag, type)"]
    assert "sister" not in done.stdout + done.stderr


@pytest.mark.parametrize(("training", "sections", "code", "message"), [
    ({"maxSeqLength": 4096}, {}, 2, "training.maxSeqLength 4096 is over the model's limit of 2048 positions"),
    ({"attention": "flash_attention_2"}, {}, 2, "training.attention is flash_attention_2 but flash-attn is not installed"),
    ({"lora": {"rank": -1}}, {}, 2, "config field training.lora.rank"),
    ({}, {"baseModel": "nobody/no-such-model"}, 2, "baseModel nobody/no-such-model: no local model dir"),
])
def test_bad_config_is_one_clear_line(write_config, capsys, monkeypatch, training, sections, code, message):
    import huggingface_hub.constants
    import transformers.utils.hub

    # No hub here: answer "not cached" at once instead of retrying the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)
    assert trainer_main(["--config", str(write_config(training, **sections))]) == code
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"personalai-trainer: error: {message}") and "\n" not in error


def test_unreadable_or_empty_data(write_config, capsys, tmp_path):
    config = write_config()
    (tmp_path / "r.jsonl").unlink()
    assert trainer_main(["--config", str(config)]) == 3
    assert "paths.reflections: " in capsys.readouterr().err
    garbage = "\n".join(json.dumps({"question": "Q?", "category": "c", "answer": "ok"}) for _ in range(4))
    assert trainer_main(["--config", str(write_config(reflections_text=garbage))]) == 3
    assert "0 usable reflections after filtering" in capsys.readouterr().err
