"""A TrainingRun's status from its Job and pod: Queued with the scheduler's words, Running, done."""

import pytest

from personalai_operator.conditions import find_condition
from personalai_operator.run_status import derive_run_status, queued_seconds, status_changed

pytestmark = pytest.mark.unit

NOW = "2026-01-01T00:10:00Z"
UNSCHEDULABLE = "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector."


def job(*conditions, completion=None):
    status = {"startTime": "2026-01-01T00:00:00Z",
              "conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                              "lastTransitionTime": "2026-01-01T00:09:00Z"} for t, r, m in conditions]}
    if completion:
        status["completionTime"] = completion
    return {"metadata": {"name": "luke-abc"}, "status": status}


def pod(phase="Pending", node=None, scheduled=None, created="2026-01-01T00:00:00Z", name="luke-abc-x"):
    conditions = []
    if scheduled is False:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE})
    if scheduled is True:
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:01:30Z"})
    body = {"metadata": {"name": name, "creationTimestamp": created}, "spec": {},
            "status": {"phase": phase, "conditions": conditions}}
    if node:
        body["spec"]["nodeName"] = node
        body["status"]["startTime"] = "2026-01-01T00:01:31Z"
    return body


def cond(update, type_):
    return find_condition(update.fields["conditions"], type_)


def test_no_job_yet_is_pending():
    update = derive_run_status(None, [], {}, 1, NOW)
    assert update.fields["phase"] == "Pending" and update.events == []


def test_unschedulable_pod_is_queued_with_the_schedulers_reason():
    update = derive_run_status(job(), [pod(scheduled=False)], {}, 1, NOW)
    assert update.fields["phase"] == "Queued"
    queued = cond(update, "Queued")
    assert queued["status"] == "True" and queued["reason"] == "Unschedulable" and queued["message"] == UNSCHEDULABLE
    assert update.fields["message"] == UNSCHEDULABLE
    assert [(e.reason, e.message) for e in update.events] == [("Queued", UNSCHEDULABLE)]


def test_running_pod_reports_its_node():
    update = derive_run_status(job(), [pod("Running", "rtx5090-1", True)], {"phase": "Queued"}, 1, NOW)
    assert update.fields["phase"] == "Running" and update.fields["node"] == "rtx5090-1"
    assert cond(update, "Running")["status"] == "True" and "rtx5090-1" in cond(update, "Running")["message"]
    assert cond(update, "Queued")["status"] == "False"
    assert update.fields["startTime"] == "2026-01-01T00:01:31Z"
    assert [e.reason for e in update.events] == ["Running"]


def test_complete_job_succeeds():
    update = derive_run_status(job(("Complete", "", "")), [pod("Succeeded", "rtx5090-0", True)],
                               {"phase": "Running"}, 1, NOW)
    assert update.fields["phase"] == "Succeeded"
    assert cond(update, "Succeeded")["status"] == "True" and cond(update, "Running")["status"] == "False"
    assert update.fields["completionTime"] == "2026-01-01T00:09:00Z"
    assert [e.reason for e in update.events] == ["Succeeded"]


def test_failed_job_fails_with_the_reason():
    update = derive_run_status(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                               [pod("Failed", "rtx5090-0", True)], {"phase": "Running"}, 1, NOW)
    assert update.fields["phase"] == "Failed"
    failed = cond(update, "Failed")
    # No terminated state to read (the pod's status has none): the trainer failed, and the Job says how.
    assert failed["status"] == "True" and failed["reason"] == "TrainerError"
    assert "BackoffLimitExceeded" in failed["message"]
    assert update.events[0].type == "Warning" and update.events[0].reason == "Failed"


def test_deadline_exceeded_is_a_failure():
    update = derive_run_status(job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
                               [], {}, 1, NOW)
    assert update.fields["phase"] == "Failed" and cond(update, "Failed")["reason"] == "DeadlineExceeded"


def test_newest_pod_wins_after_a_retry():
    old = pod("Failed", "rtx5090-0", True, created="2026-01-01T00:00:00Z", name="a")
    new = pod(scheduled=False, created="2026-01-01T00:05:00Z", name="b")
    update = derive_run_status(job(), [old, new], {"phase": "Running", "node": "rtx5090-0"}, 1, NOW)
    assert update.fields["phase"] == "Queued"


def test_validated_mirrors_the_operators_verdict_not_the_reports():
    claimed = {"phase": "Succeeded", "validation": {"passed": True}}  # what the trainer's token wrote
    passed = derive_run_status(job(("Complete", "", "")), [], claimed, 1, NOW, validation={"passed": True})
    assert cond(passed, "Validated")["status"] == "True"
    assert [e.reason for e in passed.events] == ["ThresholdsMet"]
    missed = derive_run_status(job(("Complete", "", "")), [], claimed, 1, NOW,
                               validation={"passed": False, "reasons": ["perplexity 4.2 > 3.0"]})
    assert cond(missed, "Validated")["status"] == "False" and "perplexity 4.2 > 3.0" in cond(missed, "Validated")["message"]
    unchecked = derive_run_status(job(), [pod("Running", "n", True)], claimed, 1, NOW)
    assert cond(unchecked, "Validated")["status"] == "Unknown"


def test_same_state_twice_changes_nothing_and_emits_nothing():
    first = derive_run_status(job(), [pod("Running", "rtx5090-1", True)], {}, 1, NOW)
    status = dict(first.fields)
    second = derive_run_status(job(), [pod("Running", "rtx5090-1", True)], status, 1, "2026-01-01T01:00:00Z")
    assert not status_changed(second, status) and second.events == []


def test_transition_time_moves_only_when_status_changes():
    queued = derive_run_status(job(), [pod(scheduled=False)], {}, 1, "2026-01-01T00:00:05Z")
    later = derive_run_status(job(), [pod(scheduled=False)], queued.fields, 1, "2026-01-01T00:05:00Z")
    assert cond(later, "Queued")["lastTransitionTime"] == "2026-01-01T00:00:05Z"
    running = derive_run_status(job(), [pod("Running", "n", True)], later.fields, 1, "2026-01-01T00:06:00Z")
    assert cond(running, "Queued")["lastTransitionTime"] == "2026-01-01T00:06:00Z"


def test_queued_seconds_from_creation_to_start_on_a_node():
    assert queued_seconds(pod("Running", "n", True)) == 91.0  # started 1 s after binding
    assert queued_seconds(pod(scheduled=False)) is None
    update = derive_run_status(job(), [pod("Running", "n", True)], {}, 1, NOW)
    assert update.fields["queuedSeconds"] == 91.0
    rewritten = pod("Running", "n", True)  # a node agent reported PodScheduled with the creation time
    rewritten["status"]["conditions"] = [dict(c, lastTransitionTime="2026-01-01T00:00:00Z")
                                         if c["type"] == "PodScheduled" else c for c in rewritten["status"]["conditions"]]
    assert queued_seconds(rewritten) == 91.0


def test_trainer_fields_are_never_overwritten():
    status = {"progress": {"percent": 40}, "artifact": {"location": "/artifacts/v1"}, "validation": {"passed": True}}
    update = derive_run_status(job(), [pod("Running", "n", True)], status, 1, NOW)
    assert not {"progress", "artifact", "validation"} & set(update.fields)


def test_the_schedulers_reason_is_announced_when_it_arrives():
    waiting = derive_run_status(job(), [pod()], {}, 1, NOW)
    assert waiting.fields["phase"] == "Queued" and [e.reason for e in waiting.events] == ["Queued"]
    unschedulable = derive_run_status(job(), [pod(scheduled=False)], waiting.fields, 1, NOW)
    assert [(e.reason, e.message) for e in unschedulable.events] == [("Queued", UNSCHEDULABLE)]
    again = derive_run_status(job(), [pod(scheduled=False)], unschedulable.fields, 1, NOW)
    assert again.events == []


def test_a_new_reason_from_the_scheduler_is_announced_once():
    tainted = pod(scheduled=False)
    tainted["status"]["conditions"][0]["message"] = "0/3 nodes are available: 3 node(s) had untolerated taint."
    first = derive_run_status(job(), [tainted], {}, 1, NOW)
    short = derive_run_status(job(), [pod(scheduled=False)], first.fields, 1, NOW)
    assert [(e.reason, e.message) for e in short.events] == [("Queued", UNSCHEDULABLE)]
    assert derive_run_status(job(), [pod(scheduled=False)], short.fields, 1, NOW).events == []
