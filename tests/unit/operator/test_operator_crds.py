"""The CRDs in crds/ are generated from the models, structural, described, and agree with the trainer."""

import json

import pytest
import yaml

from personalai_contracts import trainer_config
from personalai_operator import crdgen, manifests
from personalai_operator.models import PersonalAISpec, TrainingRunSpec

pytestmark = pytest.mark.unit


def _schema(kind):
    return crdgen.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node, path="$"):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}[*]")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


def test_crd_files_are_up_to_date():
    assert crdgen.main(["--check"]) == 0, "run: python -m personalai_operator.crdgen"


def test_generator_writes_to_another_folder(tmp_path):
    assert crdgen.main(["--out", str(tmp_path / "chart" / "crds")]) == 0
    written = sorted(p.name for p in (tmp_path / "chart" / "crds").iterdir())
    assert written == ["personalais.personalai.dev.yaml", "trainingruns.personalai.dev.yaml"]
    assert (tmp_path / "chart" / "crds" / written[0]).read_text() == (crdgen.DEFAULT_OUT / written[0]).read_text()


def test_check_reports_a_stale_file(tmp_path):
    crdgen.main(["--out", str(tmp_path)])
    (tmp_path / "trainingruns.personalai.dev.yaml").write_text("stale: true\n")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("kind", ["PersonalAI", "TrainingRun"])
def test_schema_is_structural(kind):
    for path, node in _walk(_schema(kind)):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "const", "title"} & set(node), path
        if path in ("$.metadata",):
            continue
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "object" and path != "$.metadata":
            assert "properties" in node or "additionalProperties" in node, path


@pytest.mark.parametrize("kind", ["PersonalAI", "TrainingRun"])
def test_every_spec_field_is_described_for_kubectl_explain(kind):
    spec = _schema(kind)["properties"]["spec"]
    undocumented = [path for path, node in _walk(spec) if not node.get("description")]
    assert undocumented == []


def test_names_short_names_and_status_subresource():
    for kind, plural, short in (("PersonalAI", "personalais", "pai"), ("TrainingRun", "trainingruns", "tr")):
        crd = crdgen.build_crd(kind)
        assert crd["metadata"]["name"] == f"{plural}.personalai.dev"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["shortNames"] == [short]
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}


def test_training_run_printer_columns():
    columns = crdgen.build_crd("TrainingRun")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"].upper() for c in columns] == ["PERSONALAI", "PHASE", "EPOCH", "LOSS", "PROGRESS", "ETA", "NODE", "AGE"]
    by_name = {c["name"]: c["jsonPath"] for c in columns}
    assert by_name["Progress"] == ".status.progress.percent" and by_name["Node"] == ".status.node"


def test_personalai_printer_columns():
    columns = crdgen.build_crd("PersonalAI")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"].upper() for c in columns] == ["DATA", "PHASE", "ADAPTER", "ENDPOINT", "AGE"]
    assert columns[0]["jsonPath"] == ".status.dataAssessment.level"


def test_bounds_enums_and_defaults_come_from_the_models():
    training = _schema("PersonalAI")["properties"]["spec"]["properties"]["training"]["properties"]
    assert training["epochs"] == {**training["epochs"], "minimum": 1, "maximum": 100, "default": 4, "type": "integer"}
    assert training["quantization"]["enum"] == ["nf4", "none"]
    assert training["attention"]["enum"] == ["auto", "flash_attention_2", "sdpa", "eager"]
    assert training["learningRate"]["exclusiveMinimum"] is True and training["learningRate"]["minimum"] == 0
    assert training["batchSize"]["x-kubernetes-int-or-string"] is True
    serving = _schema("PersonalAI")["properties"]["spec"]["properties"]["serving"]["properties"]
    assert serving["engine"]["enum"] == ["local", "tgi", "vllm"]
    assert (serving["temperature"]["default"], serving["maxTokens"]["default"], serving["historyWindow"]["default"]) == (0.7, 256, 10)


def test_cel_rules_cover_what_a_schema_cannot_say():
    pai = _schema("PersonalAI")
    spec = pai["properties"]["spec"]
    reflections_rules = [r["rule"] for r in spec["properties"]["reflections"]["x-kubernetes-validations"]]
    assert "has(self.secretRef) != has(self.configMapRef)" in reflections_rules
    assert any("defaultMode" in r["rule"] for r in spec["properties"]["serving"]["x-kubernetes-validations"])
    assert any("metadata.name" in r["rule"] for r in pai["x-kubernetes-validations"])
    run_spec = _schema("TrainingRun")["properties"]["spec"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable: create a new TrainingRun instead"} in \
        run_spec["x-kubernetes-validations"]
    assert spec["required"] == ["displayName", "reflections"]


def test_conditions_are_a_map_list_keyed_by_type():
    for kind in ("PersonalAI", "TrainingRun"):
        conditions = _schema(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_what_the_trainer_reports_is_bounded_and_pruned():
    """The trainer's token can patch its run's status: the schema bounds every field it writes."""
    status = _schema("TrainingRun")["properties"]["status"]["properties"]
    progress = status["progress"]
    assert "x-kubernetes-preserve-unknown-fields" not in progress  # a field the schema does not name is pruned
    assert {"epoch", "loss", "percent", "eta", "vramUsedMiB", "gpuTemperatureC"} <= set(progress["properties"])
    assert (progress["properties"]["percent"]["minimum"], progress["properties"]["percent"]["maximum"]) == (0, 100)
    assert status["artifact"]["properties"]["adapterVersion"]["pattern"] == "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    validation = status["validation"]["properties"]
    assert validation["coherence"]["maximum"] == 1.0 and validation["reasons"]["maxItems"] == 16


def test_crd_yaml_parses_and_matches_build():
    for name, text in crdgen.render_crds().items():
        assert yaml.safe_load(text) == crdgen.build_crd("PersonalAI" if name.startswith("personalais") else "TrainingRun")


def test_spec_training_and_validation_are_the_trainer_configs_own_classes():
    fields = TrainingRunSpec.model_fields
    assert fields["training"].annotation is trainer_config.TrainingConfig
    assert fields["validation"].annotation is trainer_config.ValidationConfig
    assert PersonalAISpec.model_fields["training"].annotation is trainer_config.TrainingConfig
    schema = _schema("TrainingRun")["properties"]["spec"]["properties"]["training"]["properties"]
    assert set(schema) == {field.alias or field_name for field_name, field in trainer_config.TrainingConfig.model_fields.items()}


def test_the_config_the_operator_writes_is_one_the_trainer_accepts():
    trainer = pytest.importorskip("personalai_trainer.config")
    spec = TrainingRunSpec.model_validate({
        "personalAI": "luke", "adapterVersion": "v1-3f9a2c1b", "dataVersion": "sha256:" + "a" * 64,
        "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}},
        "training": {"epochs": 2, "batchSize": 8, "lora": {"rank": 8, "alpha": 16}},
    })
    written = json.loads(json.dumps(manifests.build_trainer_config("luke-3f9a2c1b", "default", spec, "Luke")))
    parsed = trainer.parse_config(written)
    assert parsed.training.epochs == 2 and parsed.training.batch_size == 8 and parsed.training.lora.rank == 8
    assert parsed.paths.reflections == "/data/reflections/luke.jsonl"
    assert parsed.run.personal_ai == "luke" and parsed.persona.display_name == "Luke"


def test_personalai_spec_defaults_fill_a_minimal_manifest():
    spec = PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"configMapRef": {"name": "r", "key": "r.csv"}}})
    assert spec.base_model == "mistralai/Mistral-7B-Instruct-v0.3"
    assert spec.training.epochs == 4 and spec.serving.max_tokens == 256 and spec.reflections.kind == "ConfigMap"
