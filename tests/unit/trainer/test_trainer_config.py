"""Config parsing (camelCase, extra fields refused, errors naming the field) and machine checks."""

import json

import pytest

from personalai_contracts.gate import gate_from
from personalai_trainer.batching import rows_per_step
from personalai_trainer.config import Machine, check_environment, choose_attention, load_config, parse_config
from personalai_trainer.errors import ConfigError

pytestmark = pytest.mark.unit

GPU = Machine(cuda=True, bf16=True, compute_capability=(12, 0), bitsandbytes_error=None,
              flash_attention_installed=True)
CPU = Machine(cuda=False, bf16=False, compute_capability=None, bitsandbytes_error=None,
              flash_attention_installed=False)


def minimal(**training) -> dict:
    return {"run": {"name": "luke-3f9a2c1b", "personalAI": "luke", "adapterVersion": "v1-3f9a2c1b"},
            "persona": {"displayName": "Luke"},
            "paths": {"reflections": "/data/r.jsonl", "output": "/artifacts/v1", "checkpoints": "/artifacts/c"},
            "training": training}


def test_the_documented_example_parses_with_its_defaults():
    config = parse_config(minimal(batchSize=4, gradientAccumulationSteps=2, quantization="none"))
    assert config.run.personal_ai == "luke"
    assert rows_per_step(config.training) == 8
    gate = gate_from(config.validation)
    assert (gate.min_perplexity_gain, gate.min_perplexity_gain_over_in_context, gate.max_perplexity,
            gate.min_coherence, gate.min_personality_consistency, gate.min_closer_than_base) == (0.2, 0.0, None, 0.4,
                                                                                               0.25, None)
    assert config.base_model == "mistralai/Mistral-7B-Instruct-v0.3"
    assert rows_per_step(parse_config(minimal()).training) == 4  # "auto": the default step of 4 rows
    assert config.model_dump(by_alias=True)["training"]["gradientCheckpointing"] == "auto"


@pytest.mark.parametrize(("training", "message"), [
    ({"lora": {"rank": 0}}, "config field training.lora.rank: "),
    ({"batchSize": "big"}, "config field training.batchSize: Value error, must be 'auto' or an integer from 1 to 512"),
    ({"batchSize": 0}, "config field training.batchSize"),
    ({"quantization": "int8"}, "config field training.quantization: Input should be 'nf4' or 'none'"),
    ({"validationSplit": 0.7}, "config field training.validationSplit"),
    ({"learningRate": -1}, "config field training.learningRate"),
    ({"epochz": 3}, "config field training.epochz: Extra inputs are not permitted"),
])
def test_bad_fields_are_named(training, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(minimal(**training))
    assert str(raised.value).startswith(message)


def test_missing_sections_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config field persona: Field required"):
        parse_config({"run": {"name": "x"}, "paths": {"reflections": "a", "output": "b", "checkpoints": "c"}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"run": ')
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "good.json").write_text(json.dumps(minimal()))
    assert load_config(tmp_path / "good.json").persona.display_name == "Luke"


def test_paths_go_through_the_prefix(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.json").write_text(json.dumps(minimal()))
    monkeypatch.setenv("PERSONALAI_PATH_PREFIX", str(tmp_path))
    assert load_config("/etc/config.json").run.name == "luke-3f9a2c1b"


def test_attention_choice():
    assert choose_attention("auto", GPU) == "flash_attention_2"
    assert choose_attention("auto", CPU) == "sdpa"
    assert choose_attention("auto", Machine(True, False, (7, 5), None, True)) == "sdpa"  # Turing: no FA2
    assert choose_attention("sdpa", GPU) == "sdpa"
    with pytest.raises(ConfigError, match="flash-attn is not installed"):
        choose_attention("flash_attention_2", CPU)
    with pytest.raises(ConfigError, match="compute capability 8.0"):
        choose_attention("flash_attention_2", Machine(True, True, (7, 5), None, True))


def test_impossible_settings_fail_early_naming_the_field():
    config = parse_config(minimal(maxSeqLength=8192))
    with pytest.raises(ConfigError, match="training.maxSeqLength 8192 is over the model's limit of 4096"):
        check_environment(config, GPU, 4096)
    no_bnb = Machine(True, True, (9, 0), "ImportError", False)
    with pytest.raises(ConfigError, match="training.quantization is nf4 but bitsandbytes cannot run here"):
        check_environment(parse_config(minimal()), no_bnb, 32768)
    check_environment(parse_config(minimal(quantization="none")), no_bnb, 32768)  # bf16 LoRA needs no bnb
    with pytest.raises(ConfigError, match="training.attention is flash_attention_2"):
        check_environment(parse_config(minimal(attention="flash_attention_2")), CPU, 32768)
