"""The `Serving` condition: what the serving step found (pure).

Either nothing was rolled out (serving is off, the pin names no servable adapter, no adapter has
passed validation yet), the API refused a serving object, or the chat server's pod gives its
verdict. The scheduler, kubelet and probes decide that one; `serving_state` reads it: Ready,
Pending for a model slot (`ModelSlotsExhausted`, with how many GPU nodes and free slots there
are), image-pull and crash reasons, or still starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalai_operator.conditions import find_condition
from personalai_operator.model_slots import MODEL_SLOT, exhausted_message
from personalai_operator.promotion import Promotion

WAITING_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "ImageNotMappedForDevAgent")
DISABLED = "Disabled"


@dataclass(frozen=True)
class ServingObservation:
    """The `Serving` condition, and which adapter the chat server was rolled out with (if any);
    with it, status.abTest and status.ratings (None: leave them as they are), and the adapters as an
    A/B test's Promote left them (None: as promotion decided)."""

    serving: bool
    reason: str
    message: str
    version: str | None = None
    endpoint: str | None = None
    ab_test: dict[str, Any] | None = None
    ratings: dict[str, dict[str, int]] | None = None
    promotion: Promotion | None = None


def disabled() -> ServingObservation:
    return ServingObservation(False, DISABLED, "spec.serving.enabled is false.")


def pin_refused(error: str) -> ServingObservation:
    return ServingObservation(False, "UnknownAdapterVersion", error)


def no_adapter() -> ServingObservation:
    return ServingObservation(False, "NoAdapter", "Waiting for a trained adapter that passes validation.")


def rollout_failed(message: str, version: str | None = None) -> ServingObservation:
    """The API refused a serving object (or would not say how the server is); the next pass retries."""
    return ServingObservation(False, "RolloutFailed", message, version)


def rolled_out(version: str, endpoint: str, state: tuple[bool, str, str]) -> ServingObservation:
    """The chat server's objects are applied; `state` is the pod's verdict from `serving_state`."""
    serving, reason, message = state
    return ServingObservation(serving, reason, message, version, endpoint)


def serving_state(pods: list[dict[str, Any]], slots: dict[str, Any] | None = None) -> tuple[bool, str, str]:
    """(serving, reason, message) for the newest serving pod."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return False, "Starting", "The chat server pod has not been created yet."
    pod = max(live, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    status = pod.get("status") or {}
    conditions = status.get("conditions")
    ready = find_condition(conditions, "Ready")
    if ready and ready.get("status") == "True":
        return True, "Ready", f"The chat server is ready on {pod['spec'].get('nodeName')}."
    scheduled = find_condition(conditions, "PodScheduled")
    if not pod.get("spec", {}).get("nodeName") and scheduled and scheduled.get("status") == "False":
        message = scheduled.get("message") or ""
        if MODEL_SLOT in message:
            return False, "ModelSlotsExhausted", exhausted_message(slots or {"gpuNodes": 0, "freeSlots": 0}, message)
        return False, "Unschedulable", message or "Waiting for a node."
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in WAITING_REASONS:
            return False, waiting["reason"], (waiting.get("message") or waiting["reason"])[:500]
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("exitCode"):
            return False, "ServerExited", f"The chat server exited with code {terminated['exitCode']}."
    return False, "Starting", "The chat server is loading the model."
