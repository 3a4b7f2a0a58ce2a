"""Serving: promote validated adapters, roll out the chat server, advertise model slots.

`reconcile_serving` is called by the PersonalAI reconcile after training state is known; it
builds with serving.py, applies through kube.py and returns the status fields to merge. The node
handler keeps `personalai.dev/model-slot` on every GPU node, so the scheduler enforces the cap.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import kopf

from personalai_operator import kube, metrics, model_slots, naming, serving
from personalai_operator.conditions import make_condition, set_condition
from personalai_operator.handlers.common import SETTINGS
from personalai_operator.models import PersonalAISpec
from personalai_operator.promotion import promote, served_version
from personalai_operator.serving_status import serving_state

log = logging.getLogger(__name__)


def reconcile_serving(personalai: dict[str, Any], spec: PersonalAISpec, status: dict[str, Any],
                      run: dict[str, Any] | None, fields: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """Status fields after promotion and rollout, merged over `fields` (the training verdict)."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    conditions = list(fields.get("conditions") or status.get("conditions") or [])

    def put(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, make_condition(type_, value, reason, message, generation))

    promotion = promote(status, run)
    if promotion.promoted:
        kube.emit_event(personalai, "Normal", "AdapterPromoted",
                        f"Adapter {promotion.current['version']} from TrainingRun {promotion.current.get('trainingRun')} "
                        "passed validation and is now current.")
    if promotion.awaiting_validation:
        put("Trained", False, "ValidationPending", f"TrainingRun {run['metadata']['name']} succeeded; "
            "waiting for its validation result.")
    elif promotion.rejected_reason:
        put("Trained", False, "ValidationFailed", promotion.rejected_reason)
    elif promotion.current:
        put("Trained", True, "AdapterValidated", f"Adapter {promotion.current['version']} passed validation.")
    out: dict[str, Any] = {"currentAdapter": promotion.current, "adapterHistory": promotion.history}

    version, pin_error = served_version(spec.serving.adapter_version, promotion.current, promotion.history)
    serving_now = False
    if not spec.serving.enabled:
        kube.delete_if_present("Deployment", namespace, serving.server_name(name))
        put("Serving", False, "Disabled", "spec.serving.enabled is false.")
    elif pin_error:
        put("Serving", False, "UnknownAdapterVersion", pin_error)
    elif version is None:
        put("Serving", False, "NoAdapter", "Waiting for a trained adapter that passes validation.")
    else:
        serving_now, reason, message = _roll_out(personalai, spec, version)
        put("Serving", serving_now, reason, message)
        out["endpoint"] = serving.endpoint(name, namespace)
    if serving_now:
        put("Ready", True, "Serving", f"Adapter {version} is serving.")
        out["phase"] = "Serving"
    elif promotion.current and not spec.serving.enabled:
        put("Ready", True, "Trained", f"Adapter {promotion.current['version']} is trained; serving is off.")
    elif promotion.current:
        put("Ready", False, "NotServing", "The chat server is not ready.")
    else:
        put("Ready", False, "NoValidatedAdapter", "No adapter has passed validation yet.")
        if promotion.rejected_reason:
            out["phase"] = "Failed"
    out["conditions"] = conditions
    return {**fields, **{key: value for key, value in out.items() if value is not None}}


def _roll_out(personalai: dict[str, Any], spec: PersonalAISpec, version: str) -> tuple[bool, str, str]:
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    config = serving.build_server_config(personalai, spec, SETTINGS, version)
    kube.create_if_absent(serving.build_auth_secret(personalai, secrets.token_urlsafe(32)))
    kube.create_if_absent(serving.build_data_claim(personalai, SETTINGS))
    kube.apply(serving.build_server_config_map(personalai, config))
    kube.apply(serving.build_server_deployment(personalai, SETTINGS, config))
    kube.create_if_absent(serving.build_server_service(personalai))
    labels = {**naming.personalai_labels(name), naming.LABEL_COMPONENT: "server"}
    pods = kube.list_objects("Pod", namespace, labels)
    serving_now, reason, message = serving_state(pods)
    if reason == "ModelSlotsExhausted":
        summary = model_slots.slots_summary(kube.list_nodes(), kube.list_all_pods(), SETTINGS)
        serving_now, reason, message = serving_state(pods, summary)
    return serving_now, reason, message


# Events only, no timers or state handlers on nodes: those make kopf write its bookkeeping onto
# the Node object, which would need `patch nodes` (the chart grants only `patch nodes/status`).
@kopf.on.event("", "v1", "nodes", labels={SETTINGS.gpu_product_label: SETTINGS.gpu_product})
def advertise_model_slots(body: dict[str, Any], type: str | None, **_: Any) -> None:
    """Every GPU node, as it comes or changes (heartbeats included), gets its slot capacity and metrics."""
    name = body["metadata"]["name"]
    if type == "DELETED":
        for state in ("used", "free"):
            try:
                metrics.MODEL_SLOTS.remove(name, state)
            except KeyError:  # never reported for this node
                pass
        return
    patch = model_slots.build_slot_patch(body, SETTINGS)
    if patch is not None:
        kube.patch_node_status(name, patch)
        log.info("advertised %s=%s on node %s", model_slots.MODEL_SLOT, SETTINGS.model_slots_per_node, name)
    pods = kube.list_all_pods(field_selector=f"spec.nodeName={name}")
    counts = model_slots.slots_summary([body], pods, SETTINGS)["nodes"].get(name, {"used": 0, "free": 0})
    metrics.MODEL_SLOTS.labels(node=name, state="used").set(counts["used"])
    metrics.MODEL_SLOTS.labels(node=name, state="free").set(counts["free"])
