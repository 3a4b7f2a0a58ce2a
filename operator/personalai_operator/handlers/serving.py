"""Serving: roll out the chat server for the adapter to serve, advertise model slots.

`reconcile_serving` is called by the PersonalAI reconcile once promotion has decided which
adapters exist; it builds with serving.py, applies through kube.py and returns what it found for
the `Serving` condition. An object the API refuses is reported there (RolloutFailed), so the rest
of the status is still written. The node handler keeps `personalai.dev/model-slot` on every GPU
node, so the scheduler enforces the cap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from personalai_operator import kube, metrics, model_slots, naming, serving, serving_status
from personalai_operator.handlers.common import SETTINGS
from personalai_operator.models import PersonalAISpec
from personalai_operator.promotion import Promotion, served_version
from personalai_operator.serving_status import ServingObservation, serving_state

log = logging.getLogger(__name__)


def reconcile_serving(personalai: dict[str, Any], spec: PersonalAISpec, promotion: Promotion) -> ServingObservation:
    """Converge the chat server on the adapter to serve (or remove it when serving is off)."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    version, pin_error = served_version(spec.serving.adapter_version, promotion.current, promotion.history)
    if not spec.serving.enabled:
        try:
            kube.delete_if_present("Deployment", namespace, serving.server_name(name))
        except ApiException as error:
            return serving_status.rollout_failed(_refused("Deployment", serving.server_name(name), error))
        return serving_status.disabled()
    if pin_error:
        return serving_status.pin_refused(pin_error)
    if version is None:
        return serving_status.no_adapter()
    return _roll_out(personalai, spec, version,
                     serving.recorded_digest(version, promotion.current, promotion.history))


def _roll_out(personalai: dict[str, Any], spec: PersonalAISpec, version: str,
              manifest_sha256: str | None) -> ServingObservation:
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    config = serving.build_server_config(personalai, spec, SETTINGS, version, manifest_sha256)
    steps: list[tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]] = [
        (kube.create_if_absent, serving.build_data_claim(personalai, SETTINGS)),
        (kube.apply, serving.build_server_config_map(personalai, config)),
        (kube.apply, serving.build_server_deployment(personalai, SETTINGS, config)),
        (kube.create_if_absent, serving.build_server_service(personalai)),
    ]
    for step, manifest in steps:
        try:
            step(manifest)
        except ApiException as error:
            return serving_status.rollout_failed(_refused(manifest["kind"], manifest["metadata"]["name"], error),
                                                 version)
    try:
        state = _server_state(namespace, name)
    except ApiException as error:
        return serving_status.rollout_failed(f"Cannot read the chat server's pods: {kube.describe_api_error(error)}.",
                                             version)
    return serving_status.rolled_out(version, serving.endpoint(name, namespace), state)


def _refused(kind: str, name: str, error: ApiException) -> str:
    return f"The API refused {kind} {name}: {kube.describe_api_error(error)}."


def _server_state(namespace: str, name: str) -> tuple[bool, str, str]:
    labels = {**naming.personalai_labels(name), naming.LABEL_COMPONENT: "server"}
    pods = kube.list_objects("Pod", namespace, labels)
    state = serving_state(pods)
    if state[1] == "ModelSlotsExhausted":
        state = serving_state(pods, model_slots.slots_summary(kube.list_nodes(), kube.list_all_pods(), SETTINGS))
    return state


# Events only, no timers or state handlers on nodes: those make kopf write its bookkeeping onto
# the Node object, which would need `patch nodes` (the chart grants only `patch nodes/status`).
@kopf.on.event("", "v1", "nodes", labels={SETTINGS.gpu_product_label: SETTINGS.gpu_product})
def advertise_model_slots(body: kopf.Body, type: str, **_: Any) -> None:
    """Every GPU node, as it comes or changes (heartbeats included), gets its slot capacity and metrics."""
    node = dict(body)  # the pure builders take plain dicts
    name = node["metadata"]["name"]
    if type == "DELETED":
        for state in ("used", "free"):
            try:
                metrics.MODEL_SLOTS.remove(name, state)
            except KeyError:  # never reported for this node
                pass
        return
    patch = model_slots.build_slot_patch(node, SETTINGS)
    if patch is not None:
        kube.patch_node_status(name, patch)
        log.info("advertised %s=%s on node %s", model_slots.MODEL_SLOT, SETTINGS.model_slots_per_node, name)
    pods = kube.list_all_pods(field_selector=f"spec.nodeName={name}")
    counts = model_slots.slots_summary([node], pods, SETTINGS)["nodes"].get(name, {"used": 0, "free": 0})
    metrics.MODEL_SLOTS.labels(node=name, state="used").set(counts["used"])
    metrics.MODEL_SLOTS.labels(node=name, state="free").set(counts["free"])
