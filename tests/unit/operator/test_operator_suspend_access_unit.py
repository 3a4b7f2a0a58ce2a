"""spec.suspend and status.access: the spec's defaults, the Suspended condition, the published digest."""

import json

import pytest
import yaml

from personalai_operator import serving, serving_status
from personalai_operator.conditions import find_condition
from personalai_operator.crdgen import REPO_ROOT
from personalai_operator.models import PersonalAISpec, PersonalAIStatus
from personalai_operator.personalai_status import assess_data, derive_personalai_status
from personalai_operator.promotion import Promotion
from personalai_operator.run_status import is_superseded, superseded_status
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

SECRET_SENTENCE = "the creek behind the mill in 1962"
ANSWER = " ".join([SECRET_SENTENCE] + ["word"] * 40)
READY = assess_data("".join(json.dumps({"question": f"Q{i}?", "category": f"c{i % 4}", "answer": ANSWER}) + "\n"
                            for i in range(25)).encode(), "r.jsonl")
SHORT = assess_data((json.dumps({"question": "Q?", "category": "c", "answer": ANSWER}) + "\n").encode(), "r.jsonl")
V1 = {"version": "v1-a", "trainingRun": "luke-a"}
SERVING = serving_status.rolled_out("v1-a", "http://luke-chat.people.svc:8080", (True, "Ready", "Ready on n0."))
ACCESS = {"tokenSecret": "luke-chat-auth", "tokenSha256": "ab" * 32}


def minimal_spec() -> PersonalAISpec:
    return PersonalAISpec.model_validate({"displayName": "Luke",
                                          "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}}})


def test_a_spec_that_says_nothing_trains_and_adds_its_modes_to_the_built_in_ones():
    spec = minimal_spec()
    assert spec.suspend is False and spec.serving.modes_policy == "add"


def suspended(verdict, promotion, serving=None):
    return derive_personalai_status(verdict, None, promotion, serving or serving_status.no_adapter(), {}, 3,
                                    suspended=True, access=ACCESS)


def summary(fields, type_):
    condition = find_condition(fields["conditions"], type_)
    return condition["status"], condition["reason"], condition["message"]


def test_suspended_with_ready_data_assesses_it_and_says_suspended():
    fields = suspended(READY, Promotion(None, []))
    assert fields["phase"] == "Suspended"
    assert summary(fields, "DataReady")[:2] == ("True", "Ready")
    assert fields["dataAssessment"]["responses"] == 25 and "latestTrainingRun" not in fields
    status, reason, message = summary(fields, "Trained")
    assert (status, reason) == ("False", "Suspended") and "spec.suspend to false" in message
    assert SECRET_SENTENCE not in json.dumps(fields)
    PersonalAIStatus.model_validate(fields)  # every field fits the CRD's status schema


def test_suspended_with_too_little_data_still_says_what_is_missing():
    fields = suspended(SHORT, Promotion(None, []))
    assert summary(fields, "DataReady")[:2] == ("False", "InsufficientData")
    assert fields["dataAssessment"]["missing"] and summary(fields, "Trained")[1] == "Suspended"


def test_suspending_keeps_the_current_adapter_serving():
    fields = suspended(READY, Promotion(V1, []), SERVING)
    assert fields["phase"] == "Serving" and fields["currentAdapter"] == V1
    status, reason, message = summary(fields, "Trained")
    assert (status, reason) == ("True", "Suspended") and "v1-a stays current" in message
    assert summary(fields, "Ready")[:2] == ("True", "Serving")
    assert suspended(READY, Promotion(V1, []))["phase"] == "Trained"  # the adapter is there, not served


def test_access_is_published_whether_or_not_training_is_suspended():
    assert suspended(READY, Promotion(None, []))["access"] == ACCESS
    running = derive_personalai_status(READY, {"metadata": {"name": "luke-a"}, "status": {"phase": "Running"}},
                                       Promotion(None, []), serving_status.no_adapter(), {}, 3, access=ACCESS)
    assert running["access"] == ACCESS and summary(running, "Trained")[1] == "Training"


def test_a_run_stopped_by_suspend_says_so_and_resumes_like_a_superseded_one():
    fields = superseded_status({"phase": "Running", "conditions": []}, None, 2, "2026-01-01T00:00:00Z")
    assert fields["phase"] == "Failed" and "suspended (spec.suspend)" in fields["message"]
    assert is_superseded(fields)  # so lifting suspend restarts this same run (handlers: _restart_if_asked)


def test_the_example_trains_at_once_and_its_chat_server_offers_the_briefs_wise():
    from personalai_server.config import ServerConfig

    manifest = yaml.safe_load((REPO_ROOT / "examples" / "luke.yaml").read_text())
    manifest["metadata"].update(namespace="people", uid="u-1")
    spec = PersonalAISpec.model_validate(manifest["spec"])
    config = ServerConfig.model_validate(serving.build_server_config(manifest, spec, OperatorSettings(), None))
    assert not spec.suspend and {"wise", "nostalgic", "reflective"} <= set(config.conversation.personality_modes)
    assert config.conversation.default_mode == "reflective"
