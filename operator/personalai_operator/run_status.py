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

PHASES_DONE = ("Succeeded", "Failed")


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
        message = f"{failed.get('reason') or 'JobFailed'}: {failed.get('message') or 'the trainer Job failed'}"
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
        put("Failed", True, (failed or {}).get("reason") or "JobFailed", message[:1000])
    else:
        put("Failed", False, "NoFailure", "The trainer Job has not failed.")
    conditions = set_condition(conditions, validated_condition(validation, generation), now)

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
        # Still waiting, but now for a stated reason (the scheduler has looked): say it once.
        old_queued = find_condition(status.get("conditions"), "Queued") or {}
        if old_queued.get("reason") != sched_reason:
            events.append(RunEvent("Normal", "Queued", message[:1000]))
    old_validated = find_condition(status.get("conditions"), "Validated")
    new_validated = find_condition(conditions, "Validated") or {}
    if new_validated["status"] != "Unknown" and (old_validated or {}).get("status") != new_validated["status"]:
        events.append(RunEvent("Normal" if new_validated["status"] == "True" else "Warning",
                               new_validated["reason"], new_validated["message"]))
    return RunStatusUpdate(fields=fields, events=events)


def status_changed(update: RunStatusUpdate, status: dict[str, Any]) -> bool:
    """Whether writing `update` would change anything (skip no-op patches)."""
    return any(status.get(key) != value for key, value in update.fields.items())
