"""The chart's NetworkPolicies: the API server accepts them, and their podSelectors pick the pods the
operator's own builders make (trainer and chat server) as the API server evaluates label selectors.
The local control plane has no CNI, so whether traffic is blocked is not tested here (see README).
"""

import json
from urllib.parse import urlparse

import pytest

from personalai_operator import manifests, serving
from personalai_operator.models import PersonalAISpec, TrainingRunSpec
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster


def _pod_labels_from_the_operators_builders(namespace: str) -> dict[str, dict[str, str]]:
    settings = OperatorSettings()
    owner = {"apiVersion": "personalai.dev/v1alpha1", "metadata": {"namespace": namespace, "uid": "u"}}
    run = {**owner, "kind": "TrainingRun", "metadata": {**owner["metadata"], "name": "zoe-0a1b2c3d"}}
    personalai = {**owner, "kind": "PersonalAI", "metadata": {**owner["metadata"], "name": "zoe"}}
    reflections = {"secretRef": {"name": "zoe-reflections", "key": "zoe.jsonl"}}
    job = manifests.build_training_job(run, TrainingRunSpec.model_validate(
        {"personalAI": "zoe", "adapterVersion": "v1-0a1b2c3d", "reflections": reflections}), settings)
    spec = PersonalAISpec.model_validate({"displayName": "Zoe", "reflections": reflections})
    config = serving.build_server_config(personalai, spec, settings, "v1-0a1b2c3d")
    deployment = serving.build_server_deployment(personalai, settings, config)
    return {"trainer": job["spec"]["template"]["metadata"]["labels"],
            "server": deployment["spec"]["template"]["metadata"]["labels"],
            "bystander": {"app": "something-else"}}


def _never_scheduled_pod(name: str, labels: dict[str, str]) -> dict:
    """A pod with the given labels that the scheduling gate keeps off every node (nothing runs)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"schedulingGates": [{"name": "personalai.dev/never"}], "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


def _selected(cluster, namespace: str, selector: dict) -> set[str]:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels are compared here: {selector}"
    labels = ",".join(f"{key}={value}" for key, value in selector.get("matchLabels", {}).items())
    out = cluster.kubectl("get", "pods", "-n", namespace, *(["-l", labels] if labels else []), "-o", "name").stdout
    return {name.removeprefix("pod/") for name in out.split()}


def test_policies_are_accepted_and_select_the_operators_pods(cluster, release, new_namespace):
    watched = new_namespace("watched")
    api_server = f"{urlparse(cluster.server).hostname}/32"
    release.helm("install", "--set", "crds.install=false", "--set", f"watchNamespaces={{{watched}}}",
                 "--set", "networkPolicy.defaultDeny=true", "--set", f"networkPolicy.apiServer.cidrs={{{api_server}}}")
    policies = {policy["metadata"]["name"].removeprefix(f"{release.name}-"): policy["spec"] for policy in
                json.loads(cluster.kubectl("get", "networkpolicies", "-n", watched, "-o", "json").stdout)["items"]}
    assert set(policies) == {"trainer", "chat-server", "default-deny"}
    for name, labels in _pod_labels_from_the_operators_builders(watched).items():
        cluster.kubectl("apply", "-n", watched, "-f", "-", input=json.dumps(_never_scheduled_pod(name, labels)))

    assert _selected(cluster, watched, policies["trainer"]["podSelector"]) == {"trainer"}
    assert _selected(cluster, watched, policies["chat-server"]["podSelector"]) == {"server"}
    assert _selected(cluster, watched, policies["default-deny"]["podSelector"]) == {"trainer", "server", "bystander"}
    api_rule = next(rule for rule in policies["trainer"]["egress"] if "ipBlock" in rule["to"][0])
    assert api_rule["to"] == [{"ipBlock": {"cidr": api_server}}]
