"""The trainer config's one schema: the documented example is exactly what the schema's defaults produce."""

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from personalai_contracts.trainer_config import TrainerConfig

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"
# What an operator-written config names besides the defaults (paths as the trainer pod sees them).
REQUIRED = {
    "run": {"name": "luke-3f9a2c1b", "namespace": "default", "personalAI": "luke", "adapterVersion": "v1-3f9a2c1b",
            "dataVersion": "sha256:..."},
    "persona": {"displayName": "Luke"},
    "paths": {"reflections": "/data/reflections/luke.jsonl", "output": "/artifacts/v1-3f9a2c1b",
              "checkpoints": "/artifacts/checkpoints/luke-3f9a2c1b", "currentAdapter": "/artifacts/v1-0aa1b2c3"},
}


def documented_example() -> dict:
    match = re.search(r"<!-- trainer-config -->\n\s*```json\n(.*?)\n\s*```", DOC.read_text(encoding="utf-8"), re.S)
    assert match, "docs/contracts.md lost its trainer-config example block"
    return json.loads(match.group(1))


def test_the_documented_trainer_config_is_the_schemas_defaults():
    expected = TrainerConfig.model_validate(REQUIRED).model_dump(by_alias=True, mode="json")
    assert documented_example() == expected, (
        "docs/contracts.md's trainer config drifted from personalai_contracts.trainer_config; paste:\n"
        + json.dumps(expected, indent=2))


def _says_its_default(description: str, default) -> bool:
    """A reason names the value it explains ("4: small datasets stop improving by then") or says "default"."""
    spelled = {str(default), f"{default:g}" if isinstance(default, float) else str(default), str(default).lower()}
    return any(word in description for word in spelled) or any(
        word in description.lower() for word in ("default", "unset", "fixed"))


def _fields(model, prefix=""):
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _crd_sections():
    from personalai_operator.models import PersonalAISpec, TrainingRunSpec

    yield from (TrainerConfig.model_fields[name].annotation for name in ("training", "validation", "memory"))
    yield from (PersonalAISpec, TrainingRunSpec)  # their nested sections (serving, retention) too


@pytest.mark.parametrize("section", list(_crd_sections()), ids=lambda model: model.__name__)
def test_every_default_the_crd_shows_says_why(section):
    for name, field in _fields(section):
        default = field.get_default(call_default_factory=True)
        if field.is_required() or default is None or isinstance(default, (dict, list)):
            continue  # nothing chosen on the user's behalf
        assert field.description, f"{section.__name__}.{name} has no description"
        assert _says_its_default(field.description, default), (
            f"{section.__name__}.{name}: the description does not give the reason for its default {default!r}")
