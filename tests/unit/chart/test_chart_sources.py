"""The chart carries copies of things with one source elsewhere: keep them equal."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "personalai"


def test_chart_crds_are_byte_identical_to_crds_folder():
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert source and copies == source, "run: cp crds/*.yaml charts/personalai/files/crds/"


def test_every_operator_setting_the_chart_sets_exists():
    from personalai_operator.settings import ENV_PREFIX, OperatorSettings

    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    names = {line.split("name: ")[1].split(",")[0] for line in deployment.splitlines() if "name: PERSONALAI_" in line}
    aliases = {field.alias for field in OperatorSettings.model_fields.values()}
    assert names and {name[len(ENV_PREFIX):] for name in names} <= aliases


def test_default_values_satisfy_the_schema():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["required"]) <= set(values)
    assert set(values) <= set(schema["properties"])
