"""One run at a time, retried on request, failing with a reason: the pure pieces (run_status, the Job
builder) and the trainer's side of the contract (its exit codes and termination message)."""

import pytest

import personalai_trainer.__main__ as trainer_main
from personalai_operator import manifests
from personalai_operator.conditions import find_condition
from personalai_operator.models import TrainingRunSpec
from personalai_operator.run_status import (
    ATTEMPT_FIELDS,
    EXIT_CODES_NOT_RETRIED,
    RETRY_ANNOTATION,
    TRAINER_FAILURES,
    derive_run_status,
    failure_reason,
    is_superseded,
    restarted_status,
    retry_due,
    superseded_status,
)
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = "2026-01-01T00:10:00Z"
BACKOFF = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
           "message": "Job has reached the specified backoff limit"}
RUN = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun",
       "metadata": {"name": "luke-3f9a2c1b", "namespace": "family", "uid": "run-uid"}}


def trainer_pod(exit_code=1, reason="Error", message=None, last_state=False):
    terminated = {"exitCode": exit_code, "reason": reason, **({"message": message} if message else {})}
    state = {"lastState" if last_state else "state": {"terminated": terminated}}
    return {"metadata": {"name": "luke-x", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "trainer", **state}]}}


def failed_run(reason="TrainerError", annotations=None, retried_for=None):
    status = {"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": reason}]}
    if retried_for:
        status["retriedFor"] = retried_for
    return {"metadata": {"name": "luke-abc", "annotations": annotations or {}}, "status": status}


# ---- why a run failed ---------------------------------------------------------------------------

@pytest.mark.parametrize(("exit_code", "message", "reason"), [
    (2, "config", "InvalidConfig"), (3, "data", "InvalidData"), (4, "out-of-memory", "OutOfMemory"),
    (2, None, "InvalidConfig"), (3, None, "InvalidData"), (1, "error", "TrainerError"), (139, None, "TrainerError"),
])
def test_the_trainers_exit_code_and_category_name_the_reason(exit_code, message, reason):
    found, text = failure_reason(BACKOFF, trainer_pod(exit_code, message=message))
    assert found == reason and text.startswith(f"{reason}: ") and f"exit code {exit_code}" in text


def test_a_kernel_oom_kill_is_out_of_memory():
    assert failure_reason(BACKOFF, trainer_pod(137, "OOMKilled"))[0] == "OutOfMemory"


def test_the_deadline_is_the_jobs_word():
    deadline = {**BACKOFF, "reason": "DeadlineExceeded"}
    reason, text = failure_reason(deadline, None)
    assert reason == "DeadlineExceeded" and "deadline" in text and "exit code" not in text


def test_a_pod_failure_policy_stop_reads_the_pods_last_state():
    policy = {**BACKOFF, "reason": "PodFailurePolicy"}
    reason, text = failure_reason(policy, trainer_pod(3, message="data", last_state=True))
    assert reason == "InvalidData" and "Job PodFailurePolicy" in text


def test_a_termination_message_is_matched_never_repeated():
    planted = "my sister Ana's diagnosis"
    reason, text = failure_reason(BACKOFF, trainer_pod(1, message=planted))
    assert reason == "TrainerError" and planted not in text


def test_the_run_status_carries_the_reason():
    job = {"metadata": {"name": "luke-abc"}, "status": {"conditions": [BACKOFF]}}
    update = derive_run_status(job, [trainer_pod(4, message="out-of-memory")], {"phase": "Running"}, 1, NOW)
    assert update.fields["phase"] == "Failed" and find_condition(update.fields["conditions"], "Failed")["reason"] \
        == "OutOfMemory"
    assert update.fields["message"].startswith("OutOfMemory: ") and update.events[0].reason == "Failed"


# ---- the trainer's side -------------------------------------------------------------------------

def test_operator_and_trainer_agree_on_exit_codes_and_categories():
    for exit_code, (category, _) in TRAINER_FAILURES.items():
        assert trainer_main.EXIT_CATEGORIES[exit_code] == category
    assert trainer_main.EXIT_OUT_OF_MEMORY in TRAINER_FAILURES


def test_the_trainer_writes_only_its_errors_category(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    log.touch()
    monkeypatch.setattr(trainer_main, "TERMINATION_LOG", log)
    config = tmp_path / "config.json"
    config.write_text("{not json")
    code = trainer_main.main(["--config", str(config)])
    assert code == 2 and log.read_text() == "config"


def test_no_termination_log_outside_a_pod(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_main, "TERMINATION_LOG", tmp_path / "absent")
    assert trainer_main.report_category(3) == 3 and not (tmp_path / "absent").exists()


# ---- the Job -----------------------------------------------------------------------------------

def _job(settings=OperatorSettings()):
    spec = TrainingRunSpec.model_validate({
        "personalAI": "luke", "adapterVersion": "v1-3f9a2c1b",
        "reflections": {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}})
    return manifests.build_training_job(RUN, spec, settings)


def test_bad_config_or_data_fails_the_job_without_retries():
    rules = _job()["spec"]["podFailurePolicy"]["rules"]
    fail = next(rule for rule in rules if rule["action"] == "FailJob")
    assert fail["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": [2, 3]}
    assert list(EXIT_CODES_NOT_RETRIED) == [code for code, (word, _) in TRAINER_FAILURES.items()
                                            if word in ("config", "data")]
    assert _job()["spec"]["podReplacementPolicy"] == "Failed"  # what a podFailurePolicy requires


def test_the_termination_message_is_a_file_never_the_logs():
    container = _job()["spec"]["template"]["spec"]["containers"][0]
    assert container["terminationMessagePolicy"] == "File"
    assert container["terminationMessagePath"] == "/dev/termination-log"


def test_finished_jobs_expire_after_the_ttl_setting():
    assert _job()["spec"]["ttlSecondsAfterFinished"] == 86400
    settings = OperatorSettings.from_env({"PERSONALAI_FINISHED_JOB_TTL_SECONDS": "600"})
    assert _job(settings)["spec"]["ttlSecondsAfterFinished"] == 600
    with pytest.raises(ValueError, match="FINISHED_JOB_TTL_SECONDS"):
        OperatorSettings.from_env({"PERSONALAI_FINISHED_JOB_TTL_SECONDS": "-1"})


# ---- superseded, restarted, retried --------------------------------------------------------------

def test_a_superseded_run_fails_naming_the_newer_run():
    fields = superseded_status({"phase": "Running", "conditions": []}, "luke-newer", 1, NOW)
    assert fields["phase"] == "Failed" and "luke-newer" in fields["message"]
    failed = find_condition(fields["conditions"], "Failed")
    assert failed["status"] == "True" and failed["reason"] == "Superseded"
    assert find_condition(fields["conditions"], "Running")["status"] == "False"
    assert is_superseded(fields) and not is_superseded(failed_run()["status"])


def test_a_restarted_run_is_pending_with_the_last_attempt_cleared():
    old = {"phase": "Failed", "jobName": "luke-abc", "artifact": {"adapterVersion": "v1"},
           "conditions": [{"type": "Failed", "status": "True", "reason": "OutOfMemory"}]}
    fields = restarted_status(old, "Retrying", "Retrying.", 1, retry="2", now=NOW)
    assert fields["phase"] == "Pending" and fields["retriedFor"] == "2"
    assert all(fields[key] is None for key in ATTEMPT_FIELDS)  # nulls: the merge patch removes them
    assert find_condition(fields["conditions"], "Failed") ["status"] == "False"
    assert "retriedFor" not in restarted_status(old, "Resumed", "Resumed.", 1)


def test_a_retry_is_due_once_per_new_value():
    assert retry_due(failed_run(), "1")
    assert not retry_due(failed_run(), None) and not retry_due(failed_run(), "")
    assert not retry_due(failed_run(retried_for="1"), "1") and retry_due(failed_run(retried_for="1"), "2")
    # The value in force when the run was made asks for nothing: only a new one retries.
    assert not retry_due(failed_run(annotations={RETRY_ANNOTATION: "1"}), "1")


def test_no_retry_of_a_running_superseded_or_invalid_run():
    running = {"metadata": {"name": "luke-abc"}, "status": {"phase": "Running"}}
    assert not retry_due(running, "1")
    assert not retry_due(failed_run("Superseded"), "1") and not retry_due(failed_run("InvalidSpec"), "1")
