"""Serving: roll out the chat server for the adapter to serve, advertise model slots.

`reconcile_serving` is called by the PersonalAI reconcile once promotion has decided which
adapters exist; it builds with serving.py, applies through kube.py and returns what it found for
the `Serving` condition, with spec.serving.abTest's candidate (ab_test.py) and the chat server's
stats (status.abTest, status.ratings; read with the person's token). An object the API refuses is
reported there (RolloutFailed), so the rest of the status is still written. The node handler keeps `personalai.dev/model-slot` on every GPU
node, so the scheduler enforces the cap.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from personalai_contracts.endpoints import SERVICE_NAME_LABEL, ready_address
from personalai_operator import ab_test, erasure, kube, metrics, model_slots, naming, serving, serving_status
from personalai_operator.conditions import now_rfc3339
from personalai_operator.handlers.common import SETTINGS
from personalai_operator.models import PersonalAISpec
from personalai_operator.promotion import Promotion, served_version
from personalai_operator.serving_status import ServingObservation, serving_state

log = logging.getLogger(__name__)
STATS_TIMEOUT_SECONDS = 1.0  # counts from a local server: a slow answer is a sick one
# The chat server's stats last read, by PersonalAI uid: (when, figures, why unread). Read once per
# resync interval, not every pass; between reads the last outcome stands, so the status does not flap.
_stats_seen: dict[str, tuple[float, dict[str, dict[str, Any]] | None, str | None]] = {}


def reconcile_serving(personalai: dict[str, Any], spec: PersonalAISpec, promotion: Promotion) -> ServingObservation:
    """Converge the chat server on the adapter to serve (or remove it when serving is off), with the
    A/B test's candidate beside it; then read the server's figures into status.abTest and status.ratings."""
    status = personalai.get("status") or {}
    previous = status.get("abTest")
    plan = ab_test.plan_ab_test(spec.serving.ab_test, promotion, spec.serving.adapter_version, previous,
                                now_rfc3339())
    observed = _serve(personalai, spec, (plan and plan.promotion) or promotion, plan)
    versions, unread = _stats(personalai) if observed.serving else (None, None)
    if plan is not None:
        _announce(personalai, previous, plan)
    return dataclasses.replace(
        observed, promotion=plan.promotion if plan else None,
        ab_test=ab_test.ab_test_status(plan, versions, unread, previous, now_rfc3339()) if plan else None,
        ratings=None if versions is None else ab_test.ratings_of(versions, status.get("ratings")))


def _serve(personalai: dict[str, Any], spec: PersonalAISpec, promotion: Promotion,
           plan: ab_test.ABPlan | None) -> ServingObservation:
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    version, pin_error = served_version(spec.serving.adapter_version, promotion.current, promotion.history)
    if not spec.serving.enabled:
        try:  # asked of the cache first: an idle pass with serving off sends nothing
            if kube.get("Deployment", namespace, serving.server_name(name)) is not None:
                kube.delete_if_present("Deployment", namespace, serving.server_name(name))
        except ApiException as error:
            return serving_status.rollout_failed(_refused("Deployment", serving.server_name(name), error))
        return serving_status.disabled()
    if pin_error:
        return serving_status.pin_refused(pin_error)
    if version is None:
        return serving_status.no_adapter()
    return _roll_out(personalai, spec, version, serving.recorded_digest(version, promotion.current, promotion.history),
                     plan.candidate if plan else None)


def _roll_out(personalai: dict[str, Any], spec: PersonalAISpec, version: str,
              manifest_sha256: str | None, candidate: dict[str, Any] | None) -> ServingObservation:
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    config = serving.build_server_config(personalai, spec, SETTINGS, version, manifest_sha256, candidate)
    steps: list[tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]] = [
        (kube.create_if_absent, serving.build_data_claim(personalai, SETTINGS)),
        (kube.create_if_absent, serving.build_metrics_secret(namespace, serving.new_token())),
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


def _announce(personalai: dict[str, Any], previous: dict[str, Any] | None, plan: ab_test.ABPlan) -> None:
    """An Event when the A/B test starts, ends or turns invalid (versions only, never anyone's data)."""
    if ((previous or {}).get("phase"), (previous or {}).get("candidateVersion")) == (plan.phase, plan.candidate_version):
        return
    kube.emit_event(personalai, "Warning" if plan.phase == "Invalid" else "Normal", f"ABTest{plan.phase}",
                    plan.message)


def _stats(personalai: dict[str, Any]) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """The chat server's figures and why they could not be read, read at most once per resync interval."""
    uid = personalai["metadata"]["uid"]
    seen = _stats_seen.get(uid)
    if seen is None or time.monotonic() - seen[0] >= SETTINGS.resync_seconds:
        seen = _stats_seen[uid] = (time.monotonic(), *read_stats(personalai))
    return seen[1], seen[2]


def read_stats(personalai: dict[str, Any]) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """(figures by version, why they could not be read) from the chat server's stats route, under the
    person's token, with a short timeout. Never raises: an unreachable server keeps the last figures."""
    namespace, name = personalai["metadata"]["namespace"], personalai["metadata"]["name"]
    try:
        token = erasure.secret_token(kube.get("Secret", namespace, serving.auth_secret_name(name)), serving.AUTH_KEY)
        address = ready_address(kube.list_objects("EndpointSlice", namespace,
                                                  {SERVICE_NAME_LABEL: serving.server_name(name)}))
    except ApiException as error:
        return None, f"the API answered {error.status}"
    if token is None or address is None:
        return None, "no token" if token is None else "no ready endpoint"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # in-cluster: never via a proxy
    try:
        with opener.open(ab_test.stats_request(address, token), timeout=STATS_TIMEOUT_SECONDS) as response:
            return ab_test.parse_stats(response.read()), None
    except urllib.error.HTTPError as error:
        return None, f"HTTP {error.code}"
    except OSError as error:  # URLError, a refused connection, a timeout
        return None, type(error).__name__
    except ValueError as error:
        return None, str(error)


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
    pods = kube.list_all_pods(node=name)
    counts = model_slots.slots_summary([node], pods, SETTINGS)["nodes"].get(name, {"used": 0, "free": 0})
    metrics.MODEL_SLOTS.labels(node=name, state="used").set(counts["used"])
    metrics.MODEL_SLOTS.labels(node=name, state="free").set(counts["free"])
