"""The pure builders: literal inputs in, the manifest a cluster admin would expect out."""

import json

import pytest

from personalai_operator import manifests, naming
from personalai_operator.models import PersonalAISpec, TrainingRunSpec
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings()
PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "luke", "namespace": "family", "uid": "pai-uid"}}
RUN = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun",
       "metadata": {"name": "luke-3f9a2c1b", "namespace": "family", "uid": "run-uid"}}


def _spec(**overrides):
    data = {"personalAI": "luke", "adapterVersion": "v1-3f9a2c1b", "dataVersion": "sha256:" + "0" * 64,
            "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}}
    data.update(overrides)
    return TrainingRunSpec.model_validate(data)


def _job(spec=None, settings=SETTINGS):
    return manifests.build_training_job(RUN, spec or _spec(), settings)


def _pod(job):
    return job["spec"]["template"]["spec"]


def test_training_run_is_owned_by_the_personalai_and_carries_the_resolved_config():
    spec = PersonalAISpec.model_validate({"displayName": "Luke", "training": {"epochs": 2},
                                          "reflections": {"secretRef": {"name": "s", "key": "k.jsonl"}}})
    run = manifests.build_training_run(PAI, spec, "luke-abc", "sha256:" + "1" * 64, "v1-abc")
    assert run["metadata"]["ownerReferences"][0]["uid"] == "pai-uid"
    assert run["metadata"]["ownerReferences"][0]["controller"] is True
    assert run["metadata"]["namespace"] == "family"
    assert run["spec"]["personalAI"] == "luke" and run["spec"]["adapterVersion"] == "v1-abc"
    assert run["spec"]["training"]["epochs"] == 2 and run["spec"]["training"]["learningRate"] == 2e-4
    assert run["spec"]["reflections"] == {"secretRef": {"name": "s", "key": "k.jsonl"}}


def test_trainer_config_paths_follow_the_contract():
    config = manifests.build_trainer_config("luke-3f9a2c1b", "family", _spec(), "Luke")
    assert config["run"] == {"name": "luke-3f9a2c1b", "namespace": "family", "personalAI": "luke",
                             "adapterVersion": "v1-3f9a2c1b", "dataVersion": "sha256:" + "0" * 64}
    assert config["paths"] == {"reflections": "/data/reflections/luke.jsonl", "modelCache": "/models",
                               "output": "/artifacts/v1-3f9a2c1b", "checkpoints": "/artifacts/checkpoints/luke-3f9a2c1b"}
    assert config["reporting"] == {"kubernetes": True, "metricsPort": 9400, "minIntervalSeconds": 5}
    assert config["persona"] == {"displayName": "Luke"}
    served = manifests.build_trainer_config("luke-3f9a2c1b", "family", _spec(), "Luke", current_adapter="v1-0aa")
    assert served["paths"]["currentAdapter"] == "/artifacts/v1-0aa"  # scored on the same held-out set


def test_config_map_holds_config_json():
    config = manifests.build_trainer_config("luke-3f9a2c1b", "family", _spec(), "Luke")
    cm = manifests.build_config_map(RUN, config)
    assert cm["metadata"]["name"] == "luke-3f9a2c1b-config"
    assert json.loads(cm["data"]["config.json"]) == config
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "run-uid"


def test_role_allows_only_this_runs_status():
    role = manifests.build_role(RUN, "luke")
    assert role["rules"] == [{"apiGroups": ["personalai.dev"], "resources": ["trainingruns/status"],
                              "resourceNames": ["luke-3f9a2c1b"], "verbs": ["get", "patch"]}]


def test_role_binding_binds_the_runs_service_account():
    binding = manifests.build_role_binding(RUN, "luke")
    assert binding["roleRef"]["name"] == "luke-3f9a2c1b-trainer"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "luke-3f9a2c1b-trainer", "namespace": "family"}]


def test_service_account_mounts_no_token_by_default():
    sa = manifests.build_service_account(RUN, "luke")
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["labels"][naming.LABEL_TRAINING_RUN] == "luke-3f9a2c1b"


def test_job_runs_the_trainer_command():
    container = _pod(_job())["containers"][0]
    assert container["command"] == ["python", "-m", "personalai_trainer", "--config", "/etc/personalai/config.json"]
    assert container["image"] == SETTINGS.trainer_image


def test_job_asks_for_one_gpu():
    resources = _pod(_job())["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" and resources["requests"]["nvidia.com/gpu"] == "1"


def test_job_requires_the_gpu_product_label_from_settings():
    settings = OperatorSettings(GPU_PRODUCT_LABEL="example.com/gpu", GPU_PRODUCT="RTX-5090-X")
    affinity = _pod(_job(settings=settings))["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "example.com/gpu", "operator": "In", "values": ["RTX-5090-X"]}]


def test_job_tolerates_the_gpu_taint():
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in _pod(_job())["tolerations"]


def test_job_never_runs_two_trainers_and_has_a_deadline():
    job = _job(settings=OperatorSettings(TRAINING_DEADLINE_SECONDS="3600", TRAINING_BACKOFF_LIMIT="1"))
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["backoffLimit"] == 1
    assert _pod(job)["restartPolicy"] == "Never"


def test_job_meets_the_restricted_pod_security_profile():
    pod = _pod(_job())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
    allowed = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI", "csi", "ephemeral"}
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= allowed, volume["name"]


def test_only_the_trainer_pod_mounts_a_token():
    pod = _pod(_job())
    assert pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == "luke-3f9a2c1b-trainer"


def test_reflections_are_mounted_read_only_with_only_their_key():
    pod = _pod(_job())
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "reflections")
    assert mount == {"name": "reflections", "mountPath": "/data/reflections", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "reflections")
    assert volume["secret"]["secretName"] == "luke-reflections"
    assert volume["secret"]["items"] == [{"key": "luke.jsonl", "path": "luke.jsonl"}]


def test_reflections_from_a_config_map():
    spec = _spec(reflections={"configMapRef": {"name": "answers", "key": "answers.csv"}})
    volume = manifests.build_reflections_volume(spec)
    assert volume["configMap"]["name"] == "answers" and volume["configMap"]["items"][0]["path"] == "answers.csv"


def test_config_is_mounted_from_the_runs_config_map():
    pod = _pod(_job())
    assert {"name": "config", "configMap": {"name": "luke-3f9a2c1b-config"}} in pod["volumes"]
    assert {"name": "config", "mountPath": "/etc/personalai", "readOnly": True} in pod["containers"][0]["volumeMounts"]


def test_artifacts_on_the_personalais_claim_and_model_cache_shared():
    volumes = {v["name"]: v for v in _pod(_job())["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"] == {"claimName": "luke-artifacts"}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "personalai-model-cache"}


def test_storage_can_be_empty_dirs_per_settings():
    volumes = {v["name"]: v for v in _pod(_job(settings=OperatorSettings(MODEL_CACHE_CLAIM="", ARTIFACTS_VOLUME="emptyDir")))["volumes"]}
    assert volumes["artifacts"]["emptyDir"] == {} and volumes["model-cache"]["emptyDir"] == {}


def test_job_and_pod_are_labelled_with_the_run():
    job = _job()
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels[naming.LABEL_TRAINING_RUN] == "luke-3f9a2c1b" and labels[naming.LABEL_PERSONALAI] == "luke"
    assert job["metadata"]["name"] == "luke-3f9a2c1b"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingRun"


def test_artifacts_claim_is_owned_by_the_personalai():
    claim = manifests.build_artifacts_claim(PAI, OperatorSettings(STORAGE_CLASS="fast", ARTIFACTS_SIZE="5Gi"))
    assert claim["metadata"]["name"] == "luke-artifacts"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "pai-uid"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                             "storageClassName": "fast"}


def test_model_cache_claim_is_unowned_and_uses_the_default_class():
    claim = manifests.build_model_cache_claim("family", OperatorSettings())
    assert "ownerReferences" not in claim["metadata"] and "storageClassName" not in claim["spec"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_run_children_come_job_last():
    kinds = [child["kind"] for child in manifests.build_run_children(RUN, _spec(), "Luke", SETTINGS)]
    assert kinds == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service", "Job"]


def test_validation_scores_memory_as_the_default_mode_will_serve_it():
    spec = PersonalAISpec.model_validate({
        "displayName": "Luke", "reflections": {"secretRef": {"name": "s", "key": "k.jsonl"}},
        "serving": {"memory": {"maxMemories": 5}, "defaultMode": "brief",
                    "personalityModes": {"brief": {"systemPrompt": "Be brief.", "memory": {"tokenBudget": 200}}}}})
    assert manifests.served_memory(spec) == {"enabled": True, "maxMemories": 5, "tokenBudget": 200,
                                             "minSimilarity": 0.35}
    config = manifests.build_trainer_config("luke-3f9a2c1b", "family", _spec(), "Luke",
                                            memory=manifests.served_memory(spec))
    assert config["memory"]["tokenBudget"] == 200
    assert "memory" not in manifests.build_trainer_config("luke-3f9a2c1b", "family", _spec(), "Luke")


def test_with_a_shared_model_cache_the_trainer_never_downloads():
    env = {item["name"]: item.get("value") for item in _job()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    per_run = _job(settings=OperatorSettings(MODEL_CACHE_CLAIM=""))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "HF_HUB_OFFLINE" not in {item["name"] for item in per_run}  # an empty cache per run must download
