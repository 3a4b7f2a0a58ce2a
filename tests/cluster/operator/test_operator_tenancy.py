"""Nobody trains on, or promotes into, someone else's data: each attack the review found, tried and refused.

- a PersonalAI that names another person's reflections Secret;
- a hand-made TrainingRun naming another person's PersonalAI (the chart's admission policy refuses it
  too: tests/cluster/chart; here the operator alone, as when that policy is off);
- a status forged with the run's own trainer token: out-of-range numbers, another adapter, `passed: true`
  over metrics that miss the gate.
"""

import json

import kubernetes
import pytest
from cluster_harness import EXAMPLES, condition, get_json, items, personalai_manifest, secret_manifest
from kubernetes.client.rest import ApiException

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster
GROUP, VERSION = "personalai.dev", "v1alpha1"
POOR = {"perplexity": 30.0, "coherence": 0.05, "personalityConsistency": 0.1, "perplexityGain": 0.01,
        "perplexityGainOverInContext": -0.2, "evalLoss": 3.4}
GOOD = {"perplexity": 12.0, "coherence": 0.7, "personalityConsistency": 0.5, "perplexityGain": 0.45,
        "perplexityGainOverInContext": 0.2, "evalLoss": 2.5}


def _personalai(cluster, ns, name):
    return get_json(cluster, "personalais", name, "-n", ns) or {}


def _finished_run(cluster, ns, personalai):
    """The PersonalAI's run, once its Job has completed (kwok runs no trainer: nothing is reported yet)."""
    def done():
        runs = items(cluster, "trainingruns", ns, f"personalai.dev/personalai={personalai}")
        return runs[0] if runs and (runs[0].get("status") or {}).get("phase") == "Succeeded" else None
    return wait_for(done, timeout=90, message=f"{personalai}'s run to complete its Job")


def _trainer_api(cluster, ns, run_name):
    """The custom-objects API as the run's own trainer: its per-run ServiceAccount's token."""
    wait_for(lambda: get_json(cluster, "rolebindings", f"{run_name}-trainer", "-n", ns), timeout=60,
             message="the run's RoleBinding")
    token = cluster.kubectl("create", "token", f"{run_name}-trainer", "-n", ns, "--duration=10m").stdout.strip()
    admin = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)).configuration
    configuration = kubernetes.client.Configuration()
    configuration.host, configuration.ssl_ca_cert = admin.host, admin.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))


def _history_entry(cluster, ns, personalai, version):
    def entry():
        history = (_personalai(cluster, ns, personalai).get("status") or {}).get("adapterHistory") or []
        return next((record for record in history if record["version"] == version), None)
    return wait_for(entry, timeout=60, message=f"adapter {version} in {personalai}'s history")


def test_a_personalai_cannot_read_a_secret_its_owner_did_not_allow(cluster, operator, ns):
    cluster.kubectl("apply", "--server-side", "-n", ns, "-f", str(EXAMPLES))  # luke, allowed on luke-reflections
    mallory = personalai_manifest("mallory", "luke-reflections", "luke.jsonl")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=mallory)
    refused = wait_for(lambda: (lambda c: c if c.get("reason") == "ReflectionsNotAllowed" else None)(
        condition(_personalai(cluster, ns, "mallory"), "DataReady")), timeout=60, message="mallory refused")
    assert refused["status"] == "False"
    assert "Secret luke-reflections does not allow PersonalAI mallory" in refused["message"]
    wait_for(lambda: items(cluster, "trainingruns", ns, "personalai.dev/personalai=luke"), timeout=60,
             message="luke's own run (the operator has had its turn at both)")
    status = _personalai(cluster, ns, "mallory")["status"]
    assert "dataAssessment" not in status  # nothing was read: not even word counts
    assert items(cluster, "trainingruns", ns, "personalai.dev/personalai=mallory") == []
    # The owner allows it explicitly: now mallory may train on it.
    cluster.kubectl("annotate", "secret", "luke-reflections", "-n", ns, "--overwrite",
                    "personalai.dev/reflections-for=luke,mallory")
    wait_for(lambda: condition(_personalai(cluster, ns, "mallory"), "DataReady").get("status") == "True",
             timeout=60, message="mallory allowed once the owner says so")


def test_a_hand_made_training_run_gets_no_trainer(cluster, operator, ns):
    cluster.kubectl("apply", "--server-side", "-n", ns, "-f", str(EXAMPLES))
    luke_run = wait_for(lambda: items(cluster, "trainingruns", ns, "personalai.dev/personalai=luke"),
                        timeout=60, message="luke's run")[0]
    hand_made = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun",
                 "metadata": {"name": "mallory-1", "labels": {"personalai.dev/personalai": "luke"}},
                 "spec": {"personalAI": "luke", "adapterVersion": luke_run["spec"]["adapterVersion"] + "-x",
                          "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(hand_made))
    failed = wait_for(lambda: (lambda c: c if c.get("reason") == "Refused" else None)(
        condition(get_json(cluster, "trainingruns", "mallory-1", "-n", ns), "Failed")), timeout=60,
        message="the hand-made run refused")
    assert "metadata.ownerReferences: TrainingRun is not owned by PersonalAI luke" in failed["message"]
    assert get_json(cluster, "trainingruns", "mallory-1", "-n", ns)["status"]["phase"] == "Failed"
    assert [job["metadata"]["name"] for job in items(cluster, "jobs", ns)] == [luke_run["metadata"]["name"]]
    assert get_json(cluster, "serviceaccounts", "mallory-1-trainer", "-n", ns) is None  # no credentials either


def test_a_forged_status_does_not_decide_promotion(cluster, operator, ns):
    cluster.kubectl("apply", "--server-side", "-n", ns, "-f", str(EXAMPLES))
    zoe_text = (EXAMPLES / "reflections" / "luke.jsonl").read_text(encoding="utf-8")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=secret_manifest("zoe-reflections", "zoe.jsonl", zoe_text, "zoe"))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=personalai_manifest("zoe", "zoe-reflections", "zoe.jsonl"))

    luke_run = _finished_run(cluster, ns, "luke")
    name, version = luke_run["metadata"]["name"], luke_run["spec"]["adapterVersion"]
    api = _trainer_api(cluster, ns, name)

    def patch(api, run, status):
        return api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "trainingruns", run, {"status": status})

    # Out of the schema's bounds: refused by the API server itself, naming the field.
    for forged, field in (({"progress": {"percent": 150}}, "status.progress.percent"),
                          ({"artifact": {"adapterVersion": "../../zoe"}}, "status.artifact.adapterVersion"),
                          ({"validation": {"coherence": 7}}, "status.validation.coherence")):
        with pytest.raises(ApiException) as refused:
            patch(api, name, forged)
        assert refused.value.status == 422 and field in refused.value.body

    # `passed: true` over metrics that miss the gate: the operator's own verdict rejects it.
    patch(api, name, {"artifact": {"adapterVersion": version, "location": f"/artifacts/{version}",
                                   "manifestSha256": "a" * 64},
                      "validation": {**POOR, "passed": True, "reasons": []}})
    rejected = _history_entry(cluster, ns, "luke", version)
    assert "perplexity gain over the base model 0.010 is under the minimum 0.2" in rejected["rejected"]
    luke = _personalai(cluster, ns, "luke")["status"]
    assert "currentAdapter" not in luke
    # The run says what the operator decided, not what was claimed (its own reconcile, maybe a resync later).
    wait_for(lambda: condition(get_json(cluster, "trainingruns", name, "-n", ns), "Validated").get("status") == "False",
             timeout=30, message=f"{name} Validated=False")

    # Good metrics, but an artifact that is not this run's: refused under the run's own version.
    zoe_run = _finished_run(cluster, ns, "zoe")
    zoe_name, zoe_version = zoe_run["metadata"]["name"], zoe_run["spec"]["adapterVersion"]
    patch(_trainer_api(cluster, ns, zoe_name), zoe_name,
          {"artifact": {"adapterVersion": version, "location": f"/artifacts/{version}", "manifestSha256": "b" * 64},
           "validation": {**GOOD, "passed": True, "reasons": []}})
    refused = _history_entry(cluster, ns, "zoe", zoe_version)
    assert f"status.artifact.adapterVersion {version} is not the run's spec.adapterVersion" in refused["rejected"]
    assert "currentAdapter" not in _personalai(cluster, ns, "zoe")["status"]
