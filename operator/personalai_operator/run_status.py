"""What a TrainingRun's status should say, from its Job and pods (pure; level-based).

`derive_run_status(job, pods, status)` reads the observed objects and the current status and returns
the status fields to write plus the Events for each phase change. The same inputs always give the
same output, so a reconcile can run any number of times.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from personalai_operator.conditions import find_condition, make_condition, set_condition, to_rfc3339
from personalai_operator.models import GROUP

PHASES_DONE = ("Succeeded", "Failed")
SUPERSEDED = "Superseded"
# Set to any new value on a PersonalAI: its failed current run gets a fresh Job, once per value.
RETRY_ANNOTATION = f"{GROUP}/retry"
NOT_RETRIABLE = ("InvalidSpec",)  # the same spec fails the same way
# The trainer's exit codes and termination-message categories (personalai_trainer.__main__) -> reasons.
TRAINER_FAILURES = {2: ("config", "InvalidConfig"), 3: ("data", "InvalidData"), 4: ("out-of-memory", "OutOfMemory")}
EXIT_CODES_NOT_RETRIED = (2, 3)  # bad config, bad data: the Job fails at once rather than retrying
FAILURE_ADVICE = {
    "InvalidConfig": "the trainer rejected its config; fix the PersonalAI's spec.training",
    "InvalidData": "the trainer could not use the reflections; fix the data",
    "OutOfMemory": "the trainer ran out of memory; lower spec.training's batch size or sequence length",
    "DeadlineExceeded": "the trainer ran past its deadline",
    "TrainerError": "the trainer failed",
}
# Reset when a run starts over: what the last attempt's Job and trainer wrote.
ATTEMPT_FIELDS = ("jobName", "node", "startTime", "completionTime", "queuedSeconds", "progress", "artifact",
                  "validation", "thermal")
THROTTLED = "GpuThrottled"  # the condition and the Event of the trainer's GPU temperature limit


@dataclass
class RunEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class RunStatusUpdate:
    fields: dict[str, Any]  # status fields to merge-patch (progress/artifact/validation are the trainer's)
    events: list[RunEvent] = field(default_factory=list)


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def newest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Job's current attempt: the most recently created pod."""
    if not pods:
        return None
    return max(pods, key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]))


def scheduling_state(pod: dict[str, Any] | None) -> tuple[bool, str, str]:
    """(scheduled, reason, message) from the pod's PodScheduled condition (the scheduler's own words)."""
    if pod is None:
        return False, "WaitingForPod", "The Job has not created a trainer pod yet."
    if (pod.get("spec") or {}).get("nodeName"):
        return True, "Scheduled", f"Scheduled on {pod['spec']['nodeName']}."
    condition = find_condition((pod.get("status") or {}).get("conditions"), "PodScheduled")
    if condition and condition.get("status") == "False":
        return False, condition.get("reason") or "Unschedulable", condition.get("message") or "Waiting for a node."
    return False, "WaitingForScheduler", "Waiting for the scheduler."


def queued_seconds(pod: dict[str, Any] | None) -> float | None:
    """Seconds from pod creation until it was bound and started on a node (None until it is bound).

    The later of PodScheduled's transition and the pod's startTime: a node agent may rewrite the
    condition's timestamp when it reports the pod, but it cannot start a pod before the binding.
    """
    if pod is None:
        return None
    status = pod.get("status") or {}
    scheduled = find_condition(status.get("conditions"), "PodScheduled")
    created = _parse_time(pod["metadata"].get("creationTimestamp"))
    if not scheduled or scheduled.get("status") != "True" or created is None:
        return None
    times = [t for t in (_parse_time(scheduled.get("lastTransitionTime")), _parse_time(status.get("startTime"))) if t]
    return max(0.0, (max(times) - created).total_seconds()) if times else None


def validated_condition(validation: dict[str, Any] | None, generation: int | None) -> dict[str, Any]:
    if not validation or validation.get("passed") is None:
        return make_condition("Validated", "Unknown", "NotValidated", "The trainer has not reported validation yet.",
                              generation)
    if validation["passed"]:
        return make_condition("Validated", True, "ThresholdsMet", "The adapter met every validation threshold.",
                              generation)
    reasons = "; ".join(str(reason) for reason in validation.get("reasons") or []) or "thresholds missed"
    return make_condition("Validated", False, "ThresholdsMissed", reasons[:1000], generation)


def trainer_termination(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer container's terminated state ({} while it runs, or with no pod)."""
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == "trainer":
            state = container.get("state") or {}
            return state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    return {}


def failure_reason(failed: dict[str, Any], pod: dict[str, Any] | None) -> tuple[str, str]:
    """(reason, message) of a failed Job, from its condition and the trainer's terminated state.

    The termination message is matched against the trainer's fixed categories only and never
    echoed: whatever else a container writes there is not the operator's to repeat.
    """
    job_reason = failed.get("reason") or "JobFailed"
    terminated = trainer_termination(pod)
    code, category = terminated.get("exitCode"), (terminated.get("message") or "").strip()
    if job_reason == "DeadlineExceeded":
        reason = "DeadlineExceeded"
    elif terminated.get("reason") == "OOMKilled":
        reason = "OutOfMemory"
    else:
        reason = next((name for exit_code, (word, name) in TRAINER_FAILURES.items()
                       if category == word or code == exit_code), "TrainerError")
    exit_text = f"exit code {code}, " if code is not None else ""
    return reason, f"{reason}: {FAILURE_ADVICE[reason]} ({exit_text}Job {job_reason})."


def thermal_condition(thermal: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """GpuThrottled, from the trainer's status.thermal: True while it waits for the GPU to cool."""
    words = (f"GPU at {thermal.get('lastTemperatureC')} C, limit {thermal.get('limitC')} C; paused "
             f"{thermal.get('pausedSeconds', 0)} s in {thermal.get('episodes', 0)} episode(s).")
    if thermal.get("throttling"):
        return make_condition(THROTTLED, True, "AboveTemperatureLimit", f"Paused or slowed: {words}", generation)
    return make_condition(THROTTLED, False, "WithinTemperatureLimit", words, generation)


def derive_run_status(job: dict[str, Any] | None, pods: list[dict[str, Any]], status: dict[str, Any],
                      generation: int | None = None, now: str | None = None,
                      validation: dict[str, Any] | None = None) -> RunStatusUpdate:
    """The status a run should have given its Job and pods, and the Events its phase change deserves.

    `validation` is the operator's verdict on the trainer's report (run_trust), never the report's own
    `passed`: None until the Job has completed and the report has been checked.
    """
    conditions = list(status.get("conditions") or [])
    pod = newest_pod(pods)
    scheduled, sched_reason, sched_message = scheduling_state(pod)
    node = (pod or {}).get("spec", {}).get("nodeName") or status.get("node")
    complete = _job_condition(job, "Complete") if job else None
    failed = _job_condition(job, "Failed") if job else None
    pod_phase = ((pod or {}).get("status") or {}).get("phase")

    if job is None:
        phase, message = "Pending", "Creating the trainer Job."
    elif failed:
        phase = "Failed"
        failure, message = failure_reason(failed, pod)
    elif complete:
        phase, message = "Succeeded", "The trainer finished."
    elif pod_phase == "Running":
        phase, message = "Running", f"Training on {node}."
    elif not scheduled:
        phase, message = "Queued", sched_message
    else:
        phase, message = "Pending", f"Starting the trainer on {node}."

    def put(type_: str, value: bool | str, reason: str, text: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, make_condition(type_, value, reason, text, generation), now)

    if phase in PHASES_DONE or scheduled:
        put("Queued", False, "Scheduled" if node else sched_reason, f"Scheduled on {node}." if node else message)
    else:
        put("Queued", True, sched_reason, sched_message)
    if phase == "Running":
        put("Running", True, "PodRunning", f"The trainer is running on {node}.")
    elif phase in PHASES_DONE:
        put("Running", False, "Finished", "The trainer pod has finished.")
    else:
        put("Running", False, "NotStarted", "The trainer has not started yet.")
    put("Succeeded", phase == "Succeeded", "JobComplete" if phase == "Succeeded" else "NotComplete",
        "The trainer Job completed." if phase == "Succeeded" else "The trainer Job has not completed.")
    if phase == "Failed":
        put("Failed", True, failure, message[:1000])
    else:
        put("Failed", False, "NoFailure", "The trainer Job has not failed.")
    conditions = set_condition(conditions, validated_condition(validation, generation), now)
    if status.get("thermal"):
        conditions = set_condition(conditions, thermal_condition(status["thermal"], generation), now)

    fields: dict[str, Any] = {"phase": phase, "conditions": conditions, "message": message[:1000],
                              "observedGeneration": generation}
    if job is not None:
        fields["jobName"] = job["metadata"]["name"]
    if node:
        fields["node"] = node
    start = ((pod or {}).get("status") or {}).get("startTime") or ((job or {}).get("status") or {}).get("startTime")
    if start and phase in ("Running", "Succeeded", "Failed"):
        fields["startTime"] = status.get("startTime") or to_rfc3339(start)
    if phase in PHASES_DONE:
        finished = (((job or {}).get("status") or {}).get("completionTime")
                    or (failed or complete or {}).get("lastTransitionTime"))
        if finished:
            fields["completionTime"] = to_rfc3339(finished)
    waited = queued_seconds(pod)
    if waited is not None:
        fields["queuedSeconds"] = status.get("queuedSeconds") or waited
    fields = {key: value for key, value in fields.items() if value is not None}

    events = []
    previous_phase = status.get("phase")
    if phase != previous_phase and phase != "Pending":
        events.append(RunEvent("Warning" if phase == "Failed" else "Normal", phase, message[:1000]))
    elif phase == "Queued" and previous_phase == "Queued":
        # Still waiting, but for another stated reason (the scheduler has looked, or the cluster changed
        # under it, e.g. a node's taint cleared and now only the GPUs are short): say each one once.
        old_queued = find_condition(status.get("conditions"), "Queued") or {}
        if (old_queued.get("reason"), old_queued.get("message")) != (sched_reason, sched_message):
            events.append(RunEvent("Normal", "Queued", message[:1000]))
    old_validated = find_condition(status.get("conditions"), "Validated")
    new_validated = find_condition(conditions, "Validated") or {}
    if new_validated["status"] != "Unknown" and (old_validated or {}).get("status") != new_validated["status"]:
        events.append(RunEvent("Normal" if new_validated["status"] == "True" else "Warning",
                               new_validated["reason"], new_validated["message"]))
    old_throttled = find_condition(status.get("conditions"), THROTTLED) or {}
    new_throttled = find_condition(conditions, THROTTLED) or {}
    if new_throttled.get("status") == "True" and old_throttled.get("status") != "True":
        events.append(RunEvent("Warning", THROTTLED, new_throttled["message"]))  # once per throttle episode
    return RunStatusUpdate(fields=fields, events=events)


def status_changed(update: RunStatusUpdate, status: dict[str, Any]) -> bool:
    """Whether writing `update` would change anything (skip no-op patches)."""
    return any(status.get(key) != value for key, value in update.fields.items())


def is_superseded(status: dict[str, Any]) -> bool:
    failed = find_condition(status.get("conditions"), "Failed") or {}
    return status.get("phase") == "Failed" and failed.get("reason") == SUPERSEDED


def superseded_status(status: dict[str, Any], newer: str | None, generation: int | None,
                      now: str | None = None) -> dict[str, Any]:
    """A run stopped because its PersonalAI's data or config changed (Failed, naming the newer run), or
    (newer None) because the PersonalAI was suspended; either way a resume starts it over."""
    message = (f"Superseded by TrainingRun {newer}: the PersonalAI's data or training config changed." if newer
               else "Stopped: the PersonalAI is suspended (spec.suspend); setting it to false resumes this run.")
    conditions = set_condition(list(status.get("conditions") or []),
                               make_condition("Running", False, SUPERSEDED, message, generation), now)
    conditions = set_condition(conditions, make_condition("Failed", True, SUPERSEDED, message, generation), now)
    return {"phase": "Failed", "conditions": conditions, "message": message}


def restarted_status(status: dict[str, Any], reason: str, message: str, generation: int | None,
                     retry: str | None = None, now: str | None = None) -> dict[str, Any]:
    """A run starting over with a fresh Job: Pending, the last attempt's outcome cleared (merge-patch nulls)."""
    conditions = list(status.get("conditions") or [])
    for type_, why in (("Failed", reason), ("Succeeded", "NotComplete"), ("Running", "NotStarted")):
        conditions = set_condition(conditions, make_condition(type_, False, why, message, generation), now)
    fields: dict[str, Any] = {"phase": "Pending", "conditions": conditions, "message": message,
                              **dict.fromkeys(ATTEMPT_FIELDS)}
    if retry is not None:
        fields["retriedFor"] = retry
    return fields


def last_retry(run: dict[str, Any]) -> str | None:
    """The retry value this run last answered, or the one its PersonalAI had when it was made."""
    return ((run.get("status") or {}).get("retriedFor")
            or (run["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION))


def retry_due(run: dict[str, Any], retry: str | None) -> bool:
    """Whether the PersonalAI's retry value asks for a fresh attempt of this failed run."""
    status = run.get("status") or {}
    failed = find_condition(status.get("conditions"), "Failed") or {}
    return bool(retry) and status.get("phase") == "Failed" and failed.get("reason") not in (SUPERSEDED, *NOT_RETRIABLE) \
        and retry != last_retry(run)
