"""A PersonalAI's data verdict and its whole status, as one decision table: never the reflection text."""

import json

import pytest

from personalai_contracts import ReflectionsError, parse_reflections
from personalai_contracts.limits import MAX_FIELD_CHARS, MAX_FILE_BYTES
from personalai_operator import serving_status
from personalai_operator.conditions import find_condition
from personalai_operator.personalai_status import (
    assess_data,
    derive_personalai_status,
    invalid_spec_status,
    unavailable,
)
from personalai_operator.promotion import Promotion

pytestmark = pytest.mark.unit

SECRET_SENTENCE = "my grandmother's recipe for huckleberry pie"


def reflections(count, categories=3, words=40):
    lines = []
    for i in range(count):
        answer = " ".join([SECRET_SENTENCE] + ["word"] * (words - 6))
        lines.append(json.dumps({"question": f"Question {i}?", "category": f"cat{i % categories}", "answer": answer}))
    return ("\n".join(lines) + "\n").encode()


def test_enough_reflections_are_ready():
    verdict = assess_data(reflections(25, categories=4), "r.jsonl")
    assert verdict.ready and verdict.reason == "Ready"
    assert verdict.assessment["responses"] == 25 and verdict.assessment["level"] == "minimum"
    assert verdict.assessment["dataVersion"] == verdict.data_version


def test_too_few_says_exactly_what_is_missing():
    verdict = assess_data(reflections(14, categories=2), "r.jsonl")
    assert not verdict.ready and verdict.reason == "InsufficientData"
    assert "14 of 20 responses" in verdict.assessment["missing"]
    assert "2 of 3 categories" in verdict.assessment["missing"]
    assert "14 of 20 responses" in verdict.message and "2 of 3 categories" in verdict.message


def test_malformed_data_names_the_line_not_the_text():
    raw = reflections(3) + b'{"question": "q", "category": "c", "answer": ' + SECRET_SENTENCE.encode() + b"\n"
    verdict = assess_data(raw, "r.jsonl")
    assert not verdict.ready and verdict.reason == "ReflectionsMalformed"
    assert "4" in verdict.message and "huckleberry" not in verdict.message


def test_binary_garbage_is_a_verdict_not_a_crash():
    verdict = assess_data(b"\xff\xfe\x00\x01" * 100, "r.bin")
    assert not verdict.ready and verdict.reason in ("ReflectionsMalformed", "ReflectionsUnreadable")


READY = assess_data(reflections(25, categories=4), "r.jsonl")
SHORT = assess_data(reflections(5), "r.jsonl")
MISSING = unavailable("SecretNotFound", "Secret luke-reflections not found.")
V1 = {"version": "v1-a", "trainingRun": "luke-a"}
V2 = {"version": "v2-b", "trainingRun": "luke-b"}
NONE = Promotion(None, [])
CURRENT = Promotion(V1, [])
PROMOTED = Promotion(V2, [V1], promoted=True)
PENDING = Promotion(None, [], awaiting_validation=True)
REJECTED = Promotion(None, [{**V1, "rejected": "adapter v1-a was not promoted: coherence 0.2 < 0.4"}],
                     rejected_reason="adapter v1-a was not promoted: coherence 0.2 < 0.4")
REJECTED_OVER_CURRENT = Promotion(V1, [{**V2, "rejected": "adapter v2-b was not promoted: perplexity 7.1 > 3.0"}],
                                  rejected_reason="adapter v2-b was not promoted: perplexity 7.1 > 3.0")
ENDPOINT = "http://luke-chat.people.svc:8080"
NO_ADAPTER = serving_status.no_adapter()
DISABLED = serving_status.disabled()
PIN = serving_status.pin_refused("spec.serving.adapterVersion v9 is not a trained adapter of this PersonalAI")
REFUSED = serving_status.rollout_failed("The API refused Deployment luke-chat: HTTP 403 Forbidden.", "v1-a")
SERVING = serving_status.rolled_out("v1-a", ENDPOINT, (True, "Ready", "The chat server is ready on n0."))
STARTING = serving_status.rolled_out("v1-a", ENDPOINT, (False, "Starting", "The chat server is loading the model."))
NO_SLOT = serving_status.rolled_out("v1-a", ENDPOINT, (False, "ModelSlotsExhausted", "Every model slot is taken."))


def run(phase):
    status = {"phase": phase, "message": "0/3 nodes are available"} if phase else {}
    return {"metadata": {"name": "luke-abc"}, "status": status}


# (id, verdict, run phase or None for no run, promotion, serving,
#  phase, DataReady, Trained, Serving, Ready) -- each condition as (status, reason)
TABLE = [
    ("too-little-data", SHORT, None, NONE, NO_ADAPTER, "AwaitingData", ("False", "InsufficientData"),
     ("False", "AwaitingData"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("secret-missing", MISSING, None, NONE, NO_ADAPTER, "AwaitingData", ("False", "SecretNotFound"),
     ("False", "AwaitingData"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("run-just-made", READY, "", NONE, NO_ADAPTER, "Training", ("True", "Ready"),
     ("False", "Pending"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("run-queued", READY, "Queued", NONE, NO_ADAPTER, "Training", ("True", "Ready"),
     ("False", "Queued"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("run-running", READY, "Running", NONE, NO_ADAPTER, "Training", ("True", "Ready"),
     ("False", "Training"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("run-failed", READY, "Failed", NONE, NO_ADAPTER, "Failed", ("True", "Ready"),
     ("False", "TrainingFailed"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("awaiting-validation", READY, "Succeeded", PENDING, NO_ADAPTER, "Trained", ("True", "Ready"),
     ("False", "ValidationPending"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("only-adapter-rejected", READY, "Succeeded", REJECTED, NO_ADAPTER, "Failed", ("True", "Ready"),
     ("False", "ValidationFailed"), ("False", "NoAdapter"), ("False", "NoValidatedAdapter")),
    ("promoted-and-serving", READY, "Succeeded", PROMOTED, SERVING, "Serving", ("True", "Ready"),
     ("True", "AdapterValidated"), ("True", "Ready"), ("True", "Serving")),
    ("server-starting", READY, "Succeeded", CURRENT, STARTING, "Trained", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "Starting"), ("False", "NotServing")),
    ("no-model-slot", READY, "Succeeded", CURRENT, NO_SLOT, "Trained", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "ModelSlotsExhausted"), ("False", "NotServing")),
    ("serving-off", READY, "Succeeded", CURRENT, DISABLED, "Trained", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "Disabled"), ("True", "Trained")),
    ("pin-unknown", READY, "Succeeded", CURRENT, PIN, "Trained", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "UnknownAdapterVersion"), ("False", "NotServing")),
    ("api-refused-rollout", READY, "Succeeded", CURRENT, REFUSED, "Trained", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "RolloutFailed"), ("False", "NotServing")),
    ("rejected-while-current-serves", READY, "Succeeded", REJECTED_OVER_CURRENT, SERVING, "Serving",
     ("True", "Ready"), ("False", "ValidationFailed"), ("True", "Ready"), ("True", "Serving")),
    ("retraining-while-serving", READY, "Running", CURRENT, SERVING, "Serving", ("True", "Ready"),
     ("True", "AdapterValidated"), ("True", "Ready"), ("True", "Serving")),
    ("data-shrank-while-serving", SHORT, None, CURRENT, SERVING, "Serving", ("False", "InsufficientData"),
     ("True", "AdapterValidated"), ("True", "Ready"), ("True", "Serving")),
    ("retrain-failed-serving-off", READY, "Failed", CURRENT, DISABLED, "Failed", ("True", "Ready"),
     ("True", "AdapterValidated"), ("False", "Disabled"), ("True", "Trained")),
]


def derive(verdict, run_phase, promotion, serving, status=None, now=None):
    latest = None if run_phase is None else run(run_phase)
    return derive_personalai_status(verdict, latest, promotion, serving, status or {}, 7, now)


def summary(fields, type_):
    condition = find_condition(fields["conditions"], type_)
    return condition["status"], condition["reason"]


@pytest.mark.parametrize("verdict, run_phase, promotion, serving, phase, data_ready, trained, serving_, ready",
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_status_decision_table(verdict, run_phase, promotion, serving, phase, data_ready, trained, serving_, ready):
    fields = derive(verdict, run_phase, promotion, serving)
    assert fields["phase"] == phase
    assert [summary(fields, t) for t in ("DataReady", "Trained", "Serving", "Ready")] == \
        [data_ready, trained, serving_, ready]
    assert all(c["observedGeneration"] == 7 and c["lastTransitionTime"] for c in fields["conditions"])
    assert fields["observedGeneration"] == 7


def test_a_refused_rollout_still_writes_the_rest_of_the_status():
    fields = derive(READY, "Succeeded", PROMOTED, REFUSED)
    assert fields["currentAdapter"] == V2 and fields["adapterHistory"] == [V1]
    assert fields["latestTrainingRun"] == "luke-abc" and fields["dataAssessment"]["level"] == "minimum"
    assert "endpoint" not in fields  # nothing was rolled out to point at
    serving = find_condition(fields["conditions"], "Serving")
    assert serving["message"] == "The API refused Deployment luke-chat: HTTP 403 Forbidden."


def test_a_rolled_out_server_advertises_its_endpoint():
    assert derive(READY, "Succeeded", CURRENT, STARTING)["endpoint"] == ENDPOINT
    assert "endpoint" not in derive(READY, "Succeeded", CURRENT, DISABLED)


def test_the_condition_messages_name_the_run_adapter_and_reason():
    missing = derive(MISSING, None, NONE, NO_ADAPTER)["conditions"]
    assert find_condition(missing, "DataReady")["message"] == "Secret luke-reflections not found."
    conditions = derive(READY, "Queued", NONE, NO_ADAPTER)["conditions"]
    assert find_condition(conditions, "Trained")["message"] == "TrainingRun luke-abc: 0/3 nodes are available"
    rejected = derive(READY, "Succeeded", REJECTED_OVER_CURRENT, SERVING)["conditions"]
    assert find_condition(rejected, "Trained")["message"] == REJECTED_OVER_CURRENT.rejected_reason
    assert find_condition(rejected, "Ready")["message"] == "Adapter v1-a is serving."
    off = derive(READY, "Succeeded", CURRENT, DISABLED)["conditions"]
    assert find_condition(off, "Ready")["message"] == "Adapter v1-a is trained; serving is off."


def test_transition_times_move_only_when_a_condition_flips():
    before = derive(READY, "Succeeded", CURRENT, STARTING, now="2026-11-25T10:00:00Z")
    after = derive(READY, "Succeeded", CURRENT, SERVING, status=before, now="2026-11-25T11:00:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in after["conditions"]}
    assert times == {"DataReady": "2026-11-25T10:00:00Z", "Trained": "2026-11-25T10:00:00Z",
                     "Serving": "2026-11-25T11:00:00Z", "Ready": "2026-11-25T11:00:00Z"}


def test_no_text_reaches_the_status():
    for verdict in (READY, SHORT):
        assert "huckleberry" not in json.dumps(derive(verdict, None, NONE, NO_ADAPTER))


LONG_ANSWER = SECRET_SENTENCE.encode() * (MAX_FIELD_CHARS // len(SECRET_SENTENCE) + 1)


@pytest.mark.parametrize(("raw", "name"), [
    (b"[" * 100_000, "r.json"),  # was a RecursionError out of json.loads, reported by its type alone
    (b'[{"question": "q", "category": "c", "answer": ' + b"9" * 5_000 + b"}]", "r.json"),  # was a ValueError
    (reflections(3) + b"\x00", "r.jsonl"),
    (reflections(3) + b"\x81\x8d", "r.jsonl"),
    (b'question;category;answer\nWhy?;Life;"' + LONG_ANSWER + b'"\n', "r.csv"),
    (b" " * (MAX_FILE_BYTES + 1), "r.md"),
], ids=["deep-json", "long-number", "nul", "undecodable", "long-answer", "too-big"])
def test_every_parser_failure_is_data_not_ready_with_the_parser_message(raw, name):
    with pytest.raises(ReflectionsError) as raised:
        parse_reflections(raw, name)
    fields = derive(assess_data(raw, name), None, NONE, NO_ADAPTER)
    data_ready = find_condition(fields["conditions"], "DataReady")
    assert (data_ready["status"], data_ready["reason"]) == ("False", "ReflectionsMalformed")
    assert data_ready["message"] == f"Cannot read the reflections: {raised.value}"
    assert "huckleberry" not in json.dumps(fields)


def test_an_invalid_spec_fails_the_phase_and_keeps_the_other_conditions():
    status = derive(READY, "Succeeded", CURRENT, SERVING)
    fields = invalid_spec_status(status, "spec.training.epochs: Input should be greater than 0", 8)
    assert fields["phase"] == "Failed"
    assert summary(fields, "Ready") == ("False", "InvalidSpec") and summary(fields, "Serving") == ("True", "Ready")
    assert find_condition(fields["conditions"], "Ready")["message"].startswith("spec.training.epochs")
