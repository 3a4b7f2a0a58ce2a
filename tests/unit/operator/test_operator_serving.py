"""Serving builders and model slots: literal inputs, plain asserts."""

from __future__ import annotations

import base64
import hashlib

import pytest

from personalai_operator import model_slots, models, serving
from personalai_operator.models import PersonalAISpec
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "luke", "namespace": "people", "uid": "u-1"}}
SETTINGS = OperatorSettings()


def spec(**serving_fields) -> PersonalAISpec:
    return PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}},
                                          "serving": serving_fields})


def test_server_config_validates_against_the_servers_own_model():
    from personalai_server.config import ServerConfig

    config = serving.build_server_config(PAI, spec(personalityModes={
        "wise": {"systemPrompt": "You are {displayName}.", "temperature": 0.5, "description": "calm"}},
        defaultMode="wise", historyWindow=6), SETTINGS, "v1-abc")
    parsed = ServerConfig.model_validate(config)
    assert parsed.adapter.version == "v1-abc"
    assert parsed.conversation.history_window == 6
    # modesPolicy add (the default): the spec's wise replaces the built-in one, the other built-ins stay.
    assert set(parsed.conversation.personality_modes) == {"wise", "nostalgic", "playful"}
    assert parsed.conversation.personality_modes["wise"].temperature == 0.5
    assert parsed.engine.base_model == "mistralai/Mistral-7B-Instruct-v0.3"


def test_own_modes_add_to_the_built_in_ones_unless_the_policy_replaces_them():
    from personalai_server.config import DEFAULT_MODES, ServerConfig

    own = {"storyteller": {"systemPrompt": "Tell a story.", "temperature": 0.9}}
    added = ServerConfig.model_validate(serving.build_server_config(PAI, spec(personalityModes=own), SETTINGS, None))
    assert set(added.conversation.personality_modes) == {"storyteller", "wise", "nostalgic", "playful"}
    assert added.conversation.default_mode == "storyteller"  # the person's own mode, when they name none
    replaced = ServerConfig.model_validate(serving.build_server_config(
        PAI, spec(personalityModes=own, modesPolicy="replace"), SETTINGS, None))
    assert set(replaced.conversation.personality_modes) == {"storyteller"}
    # The operator's CEL rule names the server's built-in modes: one list, kept in step here.
    assert set(models.DEFAULT_MODE_NAMES) == set(DEFAULT_MODES)


def test_a_built_in_mode_may_be_the_default_only_while_modes_are_added():
    from personalai_server.config import ServerConfig

    parsed = ServerConfig.model_validate(serving.build_server_config(PAI, spec(defaultMode="nostalgic"), SETTINGS, None))
    assert parsed.conversation.default_mode == "nostalgic"
    with pytest.raises(ValueError, match="conversation.defaultMode"):
        ServerConfig.model_validate(serving.build_server_config(
            PAI, spec(personalityModes={"own": {"systemPrompt": "Hi."}}, defaultMode="wise", modesPolicy="replace"),
            SETTINGS, None))


def test_server_config_without_modes_keeps_the_servers_defaults():
    from personalai_server.config import ServerConfig

    parsed = ServerConfig.model_validate(serving.build_server_config(PAI, spec(), SETTINGS, None))
    assert parsed.adapter.version is None
    assert parsed.conversation.personality_modes  # the server's built-in modes


def test_the_served_versions_recorded_digest_reaches_the_server_config():
    from personalai_server.config import ServerConfig

    current = {"version": "v2", "manifestSha256": "b" * 64}
    history = [{"version": "v1", "manifestSha256": "a" * 64}, {"version": "v0"}]
    assert serving.recorded_digest("v1", current, history) == "a" * 64  # a pinned earlier version
    assert serving.recorded_digest("v0", current, history) is None  # recorded before digests were
    assert serving.recorded_digest(None, None, []) is None
    config = serving.build_server_config(PAI, spec(), SETTINGS, "v2", serving.recorded_digest("v2", current, history))
    assert ServerConfig.model_validate(config).adapter.manifest_sha256 == "b" * 64
    assert "manifestSha256" not in serving.build_server_config(PAI, spec(), SETTINGS, "v0", None)["adapter"]
    assert "manifestSha256" not in serving.build_server_config(PAI, spec(), SETTINGS, None, "b" * 64)["adapter"]
    # A new adapter reaches the running pod through its config file: the digest does not roll the pod.
    other = serving.build_server_config(PAI, spec(), SETTINGS, "v1", "a" * 64)
    assert serving.restart_hash(config) == serving.restart_hash(other)


def test_memory_settings_and_mode_overrides_reach_the_server_config():
    from personalai_contracts.memory import MemorySettings
    from personalai_server.config import ServerConfig, memory_settings

    parsed = ServerConfig.model_validate(serving.build_server_config(PAI, spec(
        memory={"maxMemories": 5, "minSimilarity": 0.5},
        personalityModes={"wise": {"systemPrompt": "You are {displayName}.", "memory": {"tokenBudget": 200}},
                          "playful": {"systemPrompt": "Hi.", "memory": {"enabled": False}}}), SETTINGS, "v1"))
    conversation = parsed.conversation
    assert memory_settings(conversation, conversation.personality_modes["wise"]) == MemorySettings(
        enabled=True, max_memories=5, token_budget=200, min_similarity=0.5)
    assert not memory_settings(conversation, conversation.personality_modes["playful"]).enabled
    defaults = ServerConfig.model_validate(serving.build_server_config(PAI, spec(), SETTINGS, "v1")).conversation
    assert memory_settings(defaults, defaults.personality_modes[defaults.default_mode]) == MemorySettings()


@pytest.mark.parametrize("memory", [{"maxMemories": 21}, {"tokenBudget": -1}, {"minSimilarity": 1.1}])
def test_memory_bounds_are_part_of_the_spec(memory):
    with pytest.raises(ValueError):
        spec(memory=memory)


def test_every_serving_pod_holds_one_model_slot_on_an_rtx_5090_node():
    config = serving.build_server_config(PAI, spec(), SETTINGS, "v1")
    deployment = serving.build_server_deployment(PAI, SETTINGS, config)
    pod = deployment["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"][model_slots.MODEL_SLOT] == "1"
    assert resources["limits"][model_slots.MODEL_SLOT] == "1"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["NVIDIA-GeForce-RTX-5090"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_gpu_sharing_mode_decides_whether_a_whole_gpu_is_requested():
    config = serving.build_server_config(PAI, spec(), SETTINGS, "v1")
    sliced = serving.build_server_deployment(PAI, OperatorSettings(SERVING_GPU_SHARING="timeSlicing"), config)
    shared = serving.build_server_deployment(PAI, OperatorSettings(SERVING_GPU_SHARING="shared"), config)
    assert sliced["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in shared["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_a_new_adapter_version_does_not_change_the_pod_template():
    first = serving.build_server_deployment(PAI, SETTINGS, serving.build_server_config(PAI, spec(), SETTINGS, "v1"))
    second = serving.build_server_deployment(PAI, SETTINGS, serving.build_server_config(PAI, spec(), SETTINGS, "v2"))
    assert first["spec"]["template"] == second["spec"]["template"]
    other_engine = serving.build_server_config(PAI, spec(engine="vllm", engineUrl="http://vllm:8000"), SETTINGS, "v1")
    assert serving.build_server_deployment(PAI, SETTINGS, other_engine)["spec"]["template"] != first["spec"]["template"]


def test_server_pod_is_restricted_and_mounts_adapters_read_only():
    config = serving.build_server_config(PAI, spec(), SETTINGS, "v1")
    pod = serving.build_server_deployment(PAI, SETTINGS, config)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["artifacts"]["readOnly"] is True and mounts["auth"]["readOnly"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_service_and_endpoint_names():
    assert serving.build_server_service(PAI)["metadata"]["name"] == "luke-chat"
    assert serving.endpoint("luke", "people") == "http://luke-chat.people.svc:8080"


def node(name, product="NVIDIA-GeForce-RTX-5090", slots=None):
    status = {"capacity": {}, "allocatable": {}}
    if slots is not None:
        status["capacity"][model_slots.MODEL_SLOT] = status["allocatable"][model_slots.MODEL_SLOT] = str(slots)
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product} if product else {}},
            "status": status}


def test_slot_patch_only_for_gpu_nodes_and_only_when_wrong():
    assert model_slots.is_gpu_node(node("a"), SETTINGS)
    assert not model_slots.is_gpu_node(node("b", product=None), SETTINGS)
    assert model_slots.build_slot_patch(node("a"), SETTINGS) == {
        "status": {"capacity": {model_slots.MODEL_SLOT: "3"}, "allocatable": {model_slots.MODEL_SLOT: "3"}}}
    assert model_slots.build_slot_patch(node("a", slots=3), SETTINGS) is None
    assert model_slots.build_slot_patch(node("a", slots=2), SETTINGS) is not None


def test_slots_summary_counts_running_serving_pods():
    def pod(node_name, phase="Running"):
        return {"spec": {"nodeName": node_name, "containers": [
            {"resources": {"requests": {model_slots.MODEL_SLOT: "1"}}}]}, "status": {"phase": phase}}

    summary = model_slots.slots_summary([node("a", slots=3), node("b", slots=3), node("cpu", product=None)],
                                        [pod("a"), pod("a"), pod("a"), pod("b"), pod("b", "Succeeded")], SETTINGS)
    assert summary["gpuNodes"] == 2
    assert summary["nodes"]["a"] == {"allocatable": 3, "used": 3, "free": 0}
    assert summary["freeSlots"] == 2
    assert "2 GPU node(s), 2 free slot(s)" in model_slots.exhausted_message(summary, "0/3 nodes are available")


def test_a_new_token_has_256_random_bits_and_goes_into_the_secret_once():
    token = serving.new_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32 and token != serving.new_token()
    secret = serving.build_auth_secret(PAI, token)
    assert secret["metadata"]["name"] == "luke-chat-auth" and secret["stringData"] == {"token": token}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_access_status_publishes_the_secret_name_and_the_tokens_sha256_never_the_token():
    token = "a-token-of-the-person-0123456789"
    stored = {"metadata": {"name": "luke-chat-auth"}, "data": {"token": base64.b64encode(token.encode()).decode()}}
    access = serving.access_status(stored)
    assert access == {"tokenSecret": "luke-chat-auth", "tokenSha256": hashlib.sha256(token.encode()).hexdigest()}
    assert token not in str(access)
    models.AccessStatus.model_validate(access)  # the CRD's schema for status.access
    assert serving.access_status({"metadata": {"name": "luke-chat-auth"}, "data": {}}) is None
