"""The chart's TrainingRun admission policy as `helm template` renders it (the real helm binary, no
cluster): who may make runs, where, and which requests it looks at. What the API server then does
with it: tests/cluster/chart/test_chart_admission.py.
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster import binaries
from personalai_operator import naming

pytestmark = pytest.mark.unit
CHART = Path(__file__).resolve().parents[3] / "charts" / "personalai"
OPERATOR = "system:serviceaccount:personalai-system:r-operator"
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.fixture(scope="module")
def admission():
    """admission(*helm args) -> {kind: document} of the policy and binding the chart renders."""
    helm = binaries.build() / "helm"

    def render(*args: str) -> dict[str, dict]:
        out = subprocess.run([str(helm), "template", "r", str(CHART), "-n", "personalai-system",
                              "--set", "watchNamespaces={family,friends}", *args],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] in POLICY_KINDS}
    return render


def _creators(policy: dict) -> list[str]:
    (by_operator,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "byOperator"]
    subject, _, names = by_operator.partition(" in ")
    assert subject == "request.userInfo.username"
    return json.loads(names)


def test_only_the_operator_may_create_or_update_trainingruns_in_the_watched_namespaces(admission):
    docs = admission()
    policy, binding = docs["ValidatingAdmissionPolicy"], docs["ValidatingAdmissionPolicyBinding"]
    assert _creators(policy) == [OPERATOR]
    # The main resource only: trainingruns/status (the trainer) and DELETE (the garbage collector) pass.
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["personalai.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
         "resources": ["trainingruns"]}]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["family", "friends"]}]}


def test_refusals_name_the_field_and_the_label_is_the_one_the_operator_sets(admission):
    validations = admission()["ValidatingAdmissionPolicy"]["spec"]["validations"]
    assert [v["reason"] for v in validations] == ["Forbidden", "Invalid"]
    assert "edit the PersonalAI's spec.training instead" in validations[0]["messageExpression"]
    assert f"[?'{naming.LABEL_PERSONALAI}']" in validations[1]["expression"]
    assert validations[1]["messageExpression"].startswith('"metadata.labels: ')


def test_break_glass_names_join_the_operator(admission):
    docs = admission("--set", "admission.extraTrainingRunCreators={alice,system:serviceaccount:ops:oncall}")
    assert _creators(docs["ValidatingAdmissionPolicy"]) == [OPERATOR, "alice", "system:serviceaccount:ops:oncall"]


def test_disabled_renders_no_policy(admission):
    assert admission("--set", "admission.enabled=false") == {}


@pytest.mark.parametrize(("setting", "field"), [
    ("admission.enabled=sometimes", "/admission/enabled"),
    ("admission.extraTrainingRunCreators[0]=", "/admission/extraTrainingRunCreators/0"),
])
def test_bad_admission_values_are_refused_naming_the_field(setting, field):
    result = subprocess.run([str(binaries.build() / "helm"), "template", "r", str(CHART), "--set", setting],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and field in result.stderr, result.stderr
