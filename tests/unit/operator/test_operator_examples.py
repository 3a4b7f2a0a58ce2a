"""The examples: the Secret holds exactly luke.jsonl, and the PersonalAI is valid and ready to train."""

import pytest
import yaml

from personalai_operator import reflections_secret
from personalai_operator.crdgen import REPO_ROOT
from personalai_operator.models import PersonalAISpec
from personalai_operator.personalai_status import assess_data
from personalai_operator.reflections_access import access_refusal

pytestmark = pytest.mark.unit

EXAMPLES = REPO_ROOT / "examples"


def test_secret_holds_luke_jsonl_unchanged():
    secret = yaml.safe_load((EXAMPLES / "luke-reflections-secret.yaml").read_text())
    source = (EXAMPLES / "reflections" / "luke.jsonl").read_text(encoding="utf-8")
    assert secret["stringData"] == {"luke.jsonl": source}
    assert secret["metadata"]["name"] == "luke-reflections"


def test_secret_file_is_what_the_script_writes():
    source = EXAMPLES / "reflections" / "luke.jsonl"
    expected = reflections_secret.render_secret(reflections_secret.build_reflections_secret(
        "luke-reflections", "luke.jsonl", source.read_text(encoding="utf-8"), "luke"))
    assert (EXAMPLES / "luke-reflections-secret.yaml").read_text(encoding="utf-8") == expected


def test_personalai_points_at_the_secret_and_is_valid():
    manifest = yaml.safe_load((EXAMPLES / "luke.yaml").read_text())
    spec = PersonalAISpec.model_validate(manifest["spec"])
    secret = yaml.safe_load((EXAMPLES / "luke-reflections-secret.yaml").read_text())
    assert spec.reflections.secret_ref.name == secret["metadata"]["name"]
    assert spec.reflections.secret_ref.key in secret["stringData"]
    # The Secret allows exactly this PersonalAI to train on it.
    assert access_refusal("Secret", secret["metadata"]["name"], secret["metadata"], manifest["metadata"]["name"]) is None
    assert spec.serving.default_mode in spec.serving.personality_modes


def test_luke_has_enough_to_train_and_the_short_set_does_not():
    verdict = assess_data((EXAMPLES / "reflections" / "luke.jsonl").read_bytes(), "luke.jsonl")
    assert verdict.ready
    short = EXAMPLES / "reflections" / "luke-short.csv"
    if short.exists():
        assert not assess_data(short.read_bytes(), short.name).ready
