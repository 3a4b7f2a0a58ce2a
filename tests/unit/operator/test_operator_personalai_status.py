"""A PersonalAI's data verdict and conditions: exactly what is missing, never the reflection text."""

import json

import pytest

from personalai_operator.conditions import find_condition
from personalai_operator.personalai_status import assess_data, derive_personalai_status, unavailable

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


def test_no_text_reaches_the_status():
    for raw in (reflections(25, 4), reflections(5)):
        fields = derive_personalai_status(assess_data(raw, "r.jsonl"), None, {}, 1)
        assert "huckleberry" not in json.dumps(fields)


def test_awaiting_data_without_a_run():
    fields = derive_personalai_status(assess_data(reflections(5), "r.jsonl"), None, {}, 3)
    assert fields["phase"] == "AwaitingData" and fields["observedGeneration"] == 3
    data_ready = find_condition(fields["conditions"], "DataReady")
    assert data_ready["status"] == "False" and data_ready["reason"] == "InsufficientData"
    assert data_ready["lastTransitionTime"]
    assert find_condition(fields["conditions"], "Ready")["status"] == "False"


def test_missing_secret_is_reported():
    fields = derive_personalai_status(unavailable("SecretNotFound", "Secret luke-reflections not found."), None, {}, 1)
    data_ready = find_condition(fields["conditions"], "DataReady")
    assert data_ready["reason"] == "SecretNotFound" and "luke-reflections" in data_ready["message"]


@pytest.mark.parametrize("run_phase, phase, trained, reason", [
    (None, "Training", "False", "Pending"),
    ("Queued", "Training", "False", "Queued"),
    ("Running", "Training", "False", "Training"),
    ("Succeeded", "Trained", "True", "TrainingSucceeded"),
    ("Failed", "Failed", "False", "TrainingFailed"),
])
def test_run_phase_drives_trained(run_phase, phase, trained, reason):
    run = {"metadata": {"name": "luke-abc"}, "status": {"phase": run_phase, "message": "0/3 nodes are available"}}
    fields = derive_personalai_status(assess_data(reflections(25, 4), "r.jsonl"), run, {}, 1)
    assert fields["phase"] == phase and fields["latestTrainingRun"] == "luke-abc"
    condition = find_condition(fields["conditions"], "Trained")
    assert (condition["status"], condition["reason"]) == (trained, reason)
    assert find_condition(fields["conditions"], "Ready")["status"] == trained
