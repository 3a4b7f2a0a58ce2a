"""Where the base model comes from: a local dir, the model cache, or (only when downloads are allowed) the hub."""

import pytest

from personalai_contracts.trainer_config import TrainerConfig
from personalai_trainer.errors import ConfigError

pytestmark = pytest.mark.unit


def config(tmp_path, base_model="mistralai/Mistral-7B-Instruct-v0.3"):
    return TrainerConfig.model_validate({
        "run": {"name": "luke-1"}, "persona": {"displayName": "Luke"}, "baseModel": base_model,
        "paths": {"reflections": "/r.jsonl", "modelCache": str(tmp_path), "output": "/o", "checkpoints": "/c"}})


def test_offline_without_the_model_in_the_cache_is_a_clear_error(tmp_path, monkeypatch):
    from personalai_trainer.modeling import resolve_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="baseModel mistralai/Mistral-7B-Instruct-v0.3: no local model dir.*downloads are off"):
        resolve_base_model(config(tmp_path))


@pytest.mark.parametrize("layout", ["mistralai/Mistral-7B-Instruct-v0.3",
                                    "models--mistralai--Mistral-7B-Instruct-v0.3",
                                    "hub/models--mistralai--Mistral-7B-Instruct-v0.3"])
def test_offline_with_the_model_in_the_cache_loads_it(tmp_path, monkeypatch, layout):
    from personalai_trainer.modeling import resolve_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / layout).mkdir(parents=True)
    source, _ = resolve_base_model(config(tmp_path))
    assert source.endswith("Mistral-7B-Instruct-v0.3")


def test_with_downloads_allowed_the_hub_id_goes_to_from_pretrained(tmp_path, monkeypatch):
    from personalai_trainer.modeling import resolve_base_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve_base_model(config(tmp_path)) == ("mistralai/Mistral-7B-Instruct-v0.3", str(tmp_path))
