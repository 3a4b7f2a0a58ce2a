"""Operator settings from PERSONALAI_* environment variables."""

import pytest
from pydantic import ValidationError

from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_defaults():
    settings = OperatorSettings.from_env({})
    assert settings.gpu_product_label == "nvidia.com/gpu.product"
    assert settings.gpu_product == "NVIDIA-GeForce-RTX-5090"
    assert settings.model_slots_per_node == 3 and settings.serving_engine == "local"
    assert settings.namespaces == []


def test_from_environment():
    settings = OperatorSettings.from_env({
        "PERSONALAI_NAMESPACES": "family, friends", "PERSONALAI_MODEL_SLOTS_PER_NODE": "2",
        "PERSONALAI_SERVING_ENGINE": "vllm", "PERSONALAI_TRAINER_IMAGE": "registry.local/trainer:1",
        "PERSONALAI_STORAGE_CLASS": "nvme", "HOME": "/root",
    })
    assert settings.namespaces == ["family", "friends"]
    assert settings.model_slots_per_node == 2 and settings.serving_engine == "vllm"
    assert settings.trainer_image == "registry.local/trainer:1" and settings.storage_class == "nvme"


def test_bad_value_names_the_variable():
    with pytest.raises(ValidationError, match="SERVING_ENGINE"):
        OperatorSettings.from_env({"PERSONALAI_SERVING_ENGINE": "llama.cpp"})
