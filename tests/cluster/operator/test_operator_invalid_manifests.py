"""Bad manifests are refused by the API server itself, naming the field; the examples are accepted.

Runs `kubectl apply --dry-run=server` (no operator needed: the CRD schema and CEL rules decide).
"""

import copy
import json

import pytest
from cluster_harness import EXAMPLES

pytestmark = pytest.mark.cluster

PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI", "metadata": {"name": "luke"},
       "spec": {"displayName": "Luke", "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}},
                "serving": {"personalityModes": {"calm": {"systemPrompt": "You are Luke."}}}}}
RUN = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "luke-1"},
       "spec": {"personalAI": "luke", "adapterVersion": "v1-abc",
                "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}}}


def _with(base, path, value):
    body = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return body


_DELETE = object()

CASES = [  # (id, manifest, field path the error must name)
    ("negative-epochs", _with(PAI, "spec.training.epochs", -1), "spec.training.epochs"),
    ("zero-epochs", _with(PAI, "spec.training.epochs", 0), "spec.training.epochs"),
    ("too-many-epochs", _with(PAI, "spec.training.epochs", 101), "spec.training.epochs"),
    ("zero-learning-rate", _with(PAI, "spec.training.learningRate", 0), "spec.training.learningRate"),
    ("huge-learning-rate", _with(PAI, "spec.training.learningRate", 2), "spec.training.learningRate"),
    ("zero-batch", _with(PAI, "spec.training.batchSize", 0), "spec.training.batchSize"),
    ("word-batch", _with(PAI, "spec.training.batchSize", "big"), "spec.training.batchSize"),
    ("auto-batch-without-dynamic", _with(_with(PAI, "spec.training.batchSize", "auto"),
                                         "spec.training.dynamicBatching", False), "spec.training.batchSize"),
    ("split-too-large", _with(PAI, "spec.training.validationSplit", 0.6), "spec.training.validationSplit"),
    ("split-zero", _with(PAI, "spec.training.validationSplit", 0), "spec.training.validationSplit"),
    ("lora-rank-zero", _with(PAI, "spec.training.lora.rank", 0), "spec.training.lora.rank"),
    ("lora-dropout-one", _with(PAI, "spec.training.lora.dropout", 1.5), "spec.training.lora.dropout"),
    ("bad-quantization", _with(PAI, "spec.training.quantization", "int8"), "spec.training.quantization"),
    ("bad-attention", _with(PAI, "spec.training.attention", "xformers"), "spec.training.attention"),
    ("bad-checkpointing", _with(PAI, "spec.training.gradientCheckpointing", "maybe"),
     "spec.training.gradientCheckpointing"),
    ("short-sequences", _with(PAI, "spec.training.maxSeqLength", 10), "spec.training.maxSeqLength"),
    ("negative-warmup", _with(PAI, "spec.training.warmupSteps", -5), "spec.training.warmupSteps"),
    ("negative-seed", _with(PAI, "spec.training.seed", -1), "spec.training.seed"),
    ("unknown-training-field", _with(PAI, "spec.training.turbo", True), "spec.training.turbo"),
    ("missing-reflections", _with(PAI, "spec.reflections", _DELETE), "spec.reflections"),
    ("both-reflection-sources", _with(PAI, "spec.reflections.configMapRef", {"name": "c", "key": "k.csv"}),
     "spec.reflections"),
    ("no-reflection-source", _with(PAI, "spec.reflections", {}), "spec.reflections"),
    ("secret-without-name", _with(PAI, "spec.reflections.secretRef", {"key": "luke.jsonl"}),
     "spec.reflections.secretRef.name"),
    ("bad-key", _with(PAI, "spec.reflections.secretRef.key", "a/b.jsonl"), "spec.reflections.secretRef.key"),
    ("missing-display-name", _with(PAI, "spec.displayName", _DELETE), "spec.displayName"),
    ("empty-display-name", _with(PAI, "spec.displayName", ""), "spec.displayName"),
    ("bad-engine", _with(PAI, "spec.serving.engine", "ollama"), "spec.serving.engine"),
    ("hot-temperature", _with(PAI, "spec.serving.temperature", 3), "spec.serving.temperature"),
    ("zero-max-tokens", _with(PAI, "spec.serving.maxTokens", 0), "spec.serving.maxTokens"),
    ("negative-history", _with(PAI, "spec.serving.historyWindow", -1), "spec.serving.historyWindow"),
    ("default-mode-not-defined", _with(PAI, "spec.serving.defaultMode", "angry"), "spec.serving.defaultMode"),
    ("engine-url-with-local", _with(_with(PAI, "spec.serving.engine", "local"), "spec.serving.engineUrl",
                                    "http://tgi:8080"), "spec.serving.engineUrl"),
    ("mode-without-prompt", _with(PAI, "spec.serving.personalityModes.calm", {"temperature": 0.5}),
     "spec.serving.personalityModes.calm.systemPrompt"),
    ("mode-top-p-zero", _with(PAI, "spec.serving.personalityModes.calm.topP", 0),
     "spec.serving.personalityModes.calm.topP"),
    ("coherence-over-one", _with(PAI, "spec.validation.minCoherence", 1.5), "spec.validation.minCoherence"),
    ("perplexity-under-one", _with(PAI, "spec.validation.maxPerplexity", 0.5), "spec.validation.maxPerplexity"),
    ("negative-retention", _with(PAI, "spec.retention.sessionDays", -1), "spec.retention.sessionDays"),
    ("name-too-long", _with(PAI, "metadata.name", "l" * 50), "metadata.name"),
    ("name-sixty-chars", _with(PAI, "metadata.name", "l" * 60), "metadata.name must be at most 45 characters"),
    ("name-with-a-dot", _with(PAI, "metadata.name", "luke.smith"), "metadata.name must start with a lowercase letter"),
    ("name-starting-with-a-digit", _with(PAI, "metadata.name", "1luke"), "metadata.name must start with a lowercase"),
    ("no-spec", _with(PAI, "spec", _DELETE), "spec"),
    ("run-without-adapter-version", _with(RUN, "spec.adapterVersion", _DELETE), "spec.adapterVersion"),
    ("run-bad-personalai-name", _with(RUN, "spec.personalAI", "Bad_Name"), "spec.personalAI"),
    ("run-bad-data-version", _with(RUN, "spec.dataVersion", "md5:abc"), "spec.dataVersion"),
]


def _dry_run(cluster, namespace, manifest):
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(manifest),
                           check=False)


@pytest.fixture(scope="module")
def crd_namespace(cluster, crds):
    name = "crd-validation"
    cluster.kubectl("create", "namespace", name, check=False)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("manifest, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_manifest_is_rejected_naming_the_field(cluster, crd_namespace, manifest, field):
    result = _dry_run(cluster, crd_namespace, manifest)
    assert result.returncode != 0, f"accepted: {json.dumps(manifest)}"
    assert field in result.stderr, result.stderr


@pytest.mark.parametrize("manifest", [PAI, _with(PAI, "metadata.name", "l" * 45), RUN],
                         ids=["minimal-personalai", "longest-personalai-name", "minimal-trainingrun"])
def test_minimal_manifests_are_accepted(cluster, crd_namespace, manifest):
    result = _dry_run(cluster, crd_namespace, manifest)
    assert result.returncode == 0, result.stderr


def test_examples_are_accepted(cluster, crd_namespace):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        result = cluster.kubectl("apply", "--dry-run=server", "-n", crd_namespace, "-f", str(path), check=False)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_defaults_are_filled_in_by_the_api_server(cluster, crd_namespace):
    result = cluster.kubectl("apply", "--dry-run=server", "-n", crd_namespace, "-o", "json", "-f", "-",
                                   input=json.dumps(PAI))
    spec = json.loads(result.stdout)["spec"]
    assert spec["baseModel"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert spec["training"]["epochs"] == 4 and spec["training"]["lora"]["rank"] == 16
    assert spec["serving"]["temperature"] == 0.7 and spec["serving"]["historyWindow"] == 10


def test_training_run_spec_is_immutable(cluster, crd_namespace):
    cluster.kubectl("apply", "-n", crd_namespace, "-f", "-", input=json.dumps(RUN))
    try:
        result = cluster.kubectl("patch", "trainingruns", "luke-1", "-n", crd_namespace, "--type=merge",
                                 "-p", '{"spec": {"training": {"epochs": 9}}}', check=False)
        assert result.returncode != 0 and "spec" in result.stderr and "immutable" in result.stderr, result.stderr
    finally:
        cluster.kubectl("delete", "trainingruns", "luke-1", "-n", crd_namespace, "--ignore-not-found", check=False)


def test_kubectl_explain_describes_the_fields(cluster, crds):
    out = cluster.kubectl("explain", "personalais.spec.training.lora.rank").stdout
    assert "LoRA rank" in out
    out = cluster.kubectl("explain", "trainingruns.status.progress").stdout
    assert "Live progress" in out and "tokensPerSecond" in out
