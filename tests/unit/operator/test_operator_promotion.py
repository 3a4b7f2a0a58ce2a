"""Promotion, pinning and the Serving condition: literal inputs, plain asserts."""

from __future__ import annotations

import pytest

from personalai_operator.promotion import HISTORY_LIMIT, promote, served_version
from personalai_operator.serving_status import serving_state

pytestmark = pytest.mark.unit
NOW = "2026-11-25T12:00:00Z"


def run(name, version, phase="Succeeded", passed=True, reasons=(), **metrics):
    return {"metadata": {"name": name}, "spec": {"adapterVersion": version, "dataVersion": "sha256:d"},
            "status": {"phase": phase, "artifact": {"adapterVersion": version, "location": f"/artifacts/{version}"},
                       "validation": {"passed": passed, "perplexity": 2.1, "reasons": list(reasons), **metrics}}}


def test_a_validated_run_becomes_current_and_the_old_one_goes_to_history():
    first = promote({}, run("luke-a", "v1-a"), NOW)
    assert first.promoted and first.current["version"] == "v1-a" and first.history == []
    second = promote({"currentAdapter": first.current, "adapterHistory": []}, run("luke-b", "v2-b"), NOW)
    assert second.current["version"] == "v2-b"
    assert [r["version"] for r in second.history] == ["v1-a"]
    assert second.current["metrics"]["perplexity"] == 2.1 and second.current["trainingRun"] == "luke-b"


def test_a_run_that_missed_validation_is_never_promoted_and_says_why():
    current = {"version": "v1-a"}
    result = promote({"currentAdapter": current}, run("luke-b", "v2-b", passed=False, reasons=["perplexity 7.1 > 3.0"]))
    assert result.current == current and not result.promoted
    assert "perplexity 7.1 > 3.0" in result.rejected_reason


def test_a_rejected_adapter_stays_in_history_with_its_reasons_and_cannot_be_pinned():
    status = {"currentAdapter": {"version": "v1-a"}, "adapterHistory": []}
    result = promote(status, run("luke-b", "v2-b", passed=False, reasons=["coherence 0.2 is under the minimum 0.5"]))
    assert [(r["version"], r["rejected"]) for r in result.history] == [
        ("v2-b", "adapter v2-b was not promoted: coherence 0.2 is under the minimum 0.5")]
    again = promote({**status, "adapterHistory": result.history}, run("luke-b", "v2-b", passed=False))
    assert again.history == result.history and again.rejected_reason == result.rejected_reason
    version, error = served_version("v2-b", status["currentAdapter"], result.history)
    assert version is None and "cannot be served: adapter v2-b was not promoted: coherence" in error


def test_an_adapter_worse_than_the_current_one_on_the_same_held_out_set_is_not_promoted():
    status = {"currentAdapter": {"version": "v1-a"}, "adapterHistory": []}
    current = {"version": "v1-a", "perplexity": 17.5, "knowledge": 0.5}
    worse = promote(status, run("luke-b", "v2-b", perplexity=18.25, knowledge=0.6, baselines={"current": current}))
    assert not worse.promoted and worse.current == {"version": "v1-a"}
    assert worse.rejected_reason == ("adapter v2-b was not promoted: held-out perplexity 18.250 is worse than "
                                     "current adapter v1-a's 17.500 on the same held-out set")
    knows_less = promote(status, run("luke-b", "v2-b", perplexity=17.0, knowledge=0.4, baselines={"current": current}))
    assert "knowledge-probe accuracy 0.400 is worse than current adapter v1-a's 0.500" in knows_less.rejected_reason
    better = promote(status, run("luke-b", "v2-b", perplexity=17.0, knowledge=0.5, baselines={"current": current}))
    assert better.promoted and better.current["version"] == "v2-b"
    # Scored against an adapter that is no longer current: nothing like for like, the gate decides.
    stale = promote({"currentAdapter": {"version": "v3-c"}}, run("luke-b", "v2-b", perplexity=99.0,
                                                                 baselines={"current": current}))
    assert stale.promoted


def test_a_succeeded_run_without_validation_yet_waits_rather_than_fails():
    pending = run("luke-b", "v2-b")
    del pending["status"]["validation"]
    result = promote({"currentAdapter": {"version": "v1"}}, pending)
    assert result.awaiting_validation and result.rejected_reason is None and result.current == {"version": "v1"}


def test_failed_or_running_runs_change_nothing():
    for phase in ("Failed", "Running", "Queued"):
        result = promote({"currentAdapter": {"version": "v1"}}, run("r", "v2", phase=phase))
        assert result.current == {"version": "v1"} and not result.promoted and result.rejected_reason is None


def test_promoting_the_same_run_twice_is_a_no_op():
    first = promote({}, run("luke-a", "v1-a"), NOW)
    again = promote({"currentAdapter": first.current, "adapterHistory": []}, run("luke-a", "v1-a"), NOW)
    assert not again.promoted and again.current == first.current and again.history == []


def test_history_is_bounded():
    status = {"currentAdapter": {"version": "v0"}, "adapterHistory": [{"version": f"h{i}"} for i in range(20)]}
    assert len(promote(status, run("r", "v9"), NOW).history) == HISTORY_LIMIT


def test_pinning_a_known_version_serves_it_and_an_unknown_one_is_an_error():
    current, history = {"version": "v2"}, [{"version": "v1"}]
    assert served_version(None, current, history) == ("v2", None)
    assert served_version("v1", current, history) == ("v1", None)
    version, error = served_version("v7", current, history)
    assert version is None and "v7" in error
    assert served_version(None, None, []) == (None, None)


def pod(ready=False, node="rtx5090-0", scheduled_message=None, waiting=None):
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled_message:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": scheduled_message})
    statuses = [{"state": {"waiting": {"reason": waiting, "message": "back-off"}}}] if waiting else []
    return {"metadata": {"name": "p", "creationTimestamp": "2026-11-25T10:00:00Z"},
            "spec": {"nodeName": None if scheduled_message else node},
            "status": {"conditions": conditions, "containerStatuses": statuses}}


def test_serving_state_reads_the_pods_verdicts():
    assert serving_state([pod(ready=True)])[:2] == (True, "Ready")
    assert serving_state([])[1] == "Starting"
    slots = {"gpuNodes": 1, "freeSlots": 0}
    serving, reason, message = serving_state(
        [pod(scheduled_message="0/2 nodes are available: 1 Insufficient personalai.dev/model-slot.")], slots)
    assert (serving, reason) == (False, "ModelSlotsExhausted")
    assert "1 GPU node(s), 0 free slot(s)" in message
    assert serving_state([pod(waiting="ImagePullBackOff")])[1] == "ImagePullBackOff"
    assert serving_state([pod(waiting="CrashLoopBackOff")])[1] == "CrashLoopBackOff"
