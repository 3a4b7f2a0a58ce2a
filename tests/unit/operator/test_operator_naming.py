"""Run names: the same data and config name the same run; a change names a new one."""

import pytest

from personalai_operator import naming
from personalai_operator.models import TrainingConfig

pytestmark = pytest.mark.unit

DATA = naming.data_version(b'{"question": "q", "category": "c", "answer": "a"}\n')


def test_data_version_is_a_sha256_of_the_bytes():
    assert DATA.startswith("sha256:") and len(DATA) == 71
    assert naming.data_version(b"x") != naming.data_version(b"y")


def test_same_inputs_same_fingerprint():
    a = naming.training_fingerprint(DATA, "base", TrainingConfig())
    b = naming.training_fingerprint(DATA, "base", TrainingConfig.model_validate({"epochs": 4}))
    assert a == b and len(a) == 8


def test_data_config_and_base_model_changes_change_the_fingerprint():
    base = naming.training_fingerprint(DATA, "base", TrainingConfig())
    assert naming.training_fingerprint(naming.data_version(b"other"), "base", TrainingConfig()) != base
    assert naming.training_fingerprint(DATA, "base", TrainingConfig(epochs=5)) != base
    assert naming.training_fingerprint(DATA, "other-base", TrainingConfig()) != base


def test_names():
    assert naming.training_run_name("luke", "3f9a2c1b") == "luke-3f9a2c1b"
    assert naming.adapter_version(2, "3f9a2c1b") == "v2-3f9a2c1b"
    assert naming.config_map_name("luke-3f9a2c1b") == "luke-3f9a2c1b-config"
    assert naming.service_account_name("luke-3f9a2c1b") == "luke-3f9a2c1b-trainer"
    assert naming.artifacts_claim_name("luke") == "luke-artifacts"


def test_longest_personalai_name_gives_valid_child_names():
    from personalai_operator.models import MAX_PERSONALAI_NAME
    run = naming.training_run_name("a" * MAX_PERSONALAI_NAME, "3f9a2c1b")
    assert len(naming.service_account_name(run)) <= 63 and len(naming.config_map_name(run)) <= 63
