"""The one module that talks to the Kubernetes API (kopf does its own watching).

Create-if-absent is the only way children are made: a 409 AlreadyExists means another pass (a
restarted operator, a timer racing an event) made it first, and the existing object is used.
Nothing here logs or raises object contents.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from typing import Any, cast

import kubernetes
from kubernetes.client.rest import ApiException

from personalai_operator import incluster
from personalai_operator.conditions import now_rfc3339
from personalai_operator.models import GROUP, VERSION, ReflectionsSource
from personalai_operator.reflections_access import access_refusal

log = logging.getLogger(__name__)
_lock = threading.Lock()
_client: kubernetes.client.ApiClient | None = None

PLURALS = {"PersonalAI": "personalais", "TrainingRun": "trainingruns"}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class ReflectionsUnavailable(Exception):
    """The reflections' Secret/ConfigMap or key is missing or unreadable."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new can be made there, and nothing needs to be."""


def api_client() -> kubernetes.client.ApiClient:
    """One shared client: in-cluster config when in a pod, else $KUBECONFIG."""
    global _client
    with _lock:
        if _client is None:
            if incluster.in_cluster():
                incluster.load_config()
            else:
                # $KUBECONFIG read now, not when the kubernetes package was imported.
                kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
            _client = kubernetes.client.ApiClient()
        return _client


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client())


def _custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


def _sanitized(obj: Any) -> Any:
    return api_client().sanitize_for_serialization(obj)


def describe_api_error(error: ApiException) -> str:
    """Why the API refused a request, without the object's content: the HTTP status, the API's
    reason (Invalid, Forbidden, ...) and, for an invalid object, the paths of the fields at fault.
    The API's own message is left out: it may quote the values (a display name, a prompt)."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    words = f"HTTP {error.status} {body.get('reason') or error.reason or 'error'}"
    causes = (body.get("details") or {}).get("causes") or []
    fields = sorted({cause["field"] for cause in causes if isinstance(cause, dict) and cause.get("field")})
    return f"{words} ({', '.join(fields)})"[:500] if fields else words


def read_metadata(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """Only the object's metadata (PartialObjectMetadata), never its data; None when it does not exist."""
    client = api_client()
    request = client.param_serialize(
        "GET", "/api/v1/namespaces/{namespace}/{plural}/{name}",
        path_params={"namespace": namespace, "plural": {"Secret": "secrets", "ConfigMap": "configmaps"}[kind],
                     "name": name},
        header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
        auth_settings=["BearerToken"])
    response = client.call_api(*request)
    response.read()
    try:  # raises ApiException for an error status, as the typed calls do
        body = client.response_deserialize(response, {"200": "object"}).data
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    metadata = dict(cast(dict[str, Any], body).get("metadata") or {})
    # Client-side `kubectl apply` copies a Secret's whole data into this annotation: never keep it.
    metadata["annotations"] = {key: value for key, value in (metadata.get("annotations") or {}).items()
                               if key != LAST_APPLIED}
    metadata.pop("managedFields", None)
    return metadata


def read_reflections(namespace: str, source: ReflectionsSource, personalai: str) -> bytes:
    """The raw bytes of the reflections key, read only when the Secret allows `personalai` to use it
    (reflections_access); otherwise, or when absent, ReflectionsUnavailable (no content in it)."""
    ref = source.ref
    kind = source.kind
    try:
        metadata = read_metadata(kind, namespace, ref.name)
        if metadata is None:
            raise ReflectionsUnavailable(f"{kind}NotFound", f"{kind} {ref.name} not found.")
        refusal = access_refusal(kind, ref.name, metadata, personalai)
        if refusal:
            raise ReflectionsUnavailable("ReflectionsNotAllowed", refusal)
        if kind == "Secret":
            encoded = (_core().read_namespaced_secret(ref.name, namespace).data or {}).get(ref.key)
            if encoded is not None:
                return base64.b64decode(encoded)
        else:
            config_map = _core().read_namespaced_config_map(ref.name, namespace)
            text = (config_map.data or {}).get(ref.key)
            if text is not None:
                return text.encode("utf-8")
            binary = (config_map.binary_data or {}).get(ref.key)
            if binary is not None:
                return base64.b64decode(binary)
    except ApiException as error:
        if error.status == 404:
            raise ReflectionsUnavailable(f"{kind}NotFound", f"{kind} {ref.name} not found.") from None
        if error.status == 403:
            raise ReflectionsUnavailable(f"{kind}Forbidden", f"Not allowed to read {kind} {ref.name}.") from None
        raise
    raise ReflectionsUnavailable("KeyNotFound", f"{kind} {ref.name} has no key {ref.key}.")


# ---- generic create / get by kind ---------------------------------------------------------------

def _api_for(kind: str) -> tuple[Any, str]:
    """The typed API object and the method suffix for `kind`."""
    client = api_client()
    table = {
        "ConfigMap": (kubernetes.client.CoreV1Api, "config_map"),
        "ServiceAccount": (kubernetes.client.CoreV1Api, "service_account"),
        "PersistentVolumeClaim": (kubernetes.client.CoreV1Api, "persistent_volume_claim"),
        "Pod": (kubernetes.client.CoreV1Api, "pod"),
        "Role": (kubernetes.client.RbacAuthorizationV1Api, "role"),
        "RoleBinding": (kubernetes.client.RbacAuthorizationV1Api, "role_binding"),
        "Job": (kubernetes.client.BatchV1Api, "job"),
        "Secret": (kubernetes.client.CoreV1Api, "secret"),
        "Service": (kubernetes.client.CoreV1Api, "service"),
        "Deployment": (kubernetes.client.AppsV1Api, "deployment"),
        "EndpointSlice": (kubernetes.client.DiscoveryV1Api, "endpoint_slice"),
    }
    api_class, suffix = table[kind]
    return api_class(client), suffix


def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as a plain dict, or None when it does not exist."""
    try:
        if kind in PLURALS:  # the custom objects API returns the JSON object, typed as `object`
            return cast(dict[str, Any], _custom().get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                               PLURALS[kind], name))
        api, suffix = _api_for(kind)
        return _sanitized(getattr(api, f"read_namespaced_{suffix}")(name, namespace))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def create_if_absent(manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create `manifest`, or return the existing object of that name. (object, created)."""
    kind, namespace, name = manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        if kind in PLURALS:
            created = cast(dict[str, Any], _custom().create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                     PLURALS[kind], manifest))
        else:
            api, suffix = _api_for(kind)
            created = _sanitized(getattr(api, f"create_namespaced_{suffix}")(namespace, manifest))
        log.info("created %s %s/%s", kind, namespace, name)
        return created, True
    except ApiException as error:
        if error.status == 403 and "being terminated" in (error.body or ""):
            raise NamespaceTerminating(namespace) from None
        if error.status != 409:
            raise
    existing = get(kind, namespace, name)
    if existing is None:  # deleted between our create and get: the next pass creates it
        raise kubernetes.client.ApiException(status=409, reason=f"{kind} {name} is being replaced")
    return existing, False


def list_objects(kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    if kind in PLURALS:
        result = cast(dict[str, Any], _custom().list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                              PLURALS[kind], label_selector=selector))
        return result.get("items", [])
    api, suffix = _api_for(kind)
    result = getattr(api, f"list_namespaced_{suffix}")(namespace, label_selector=selector)
    return _sanitized(result).get("items", [])


def patch_status(kind: str, namespace: str, name: str, fields: dict[str, Any]) -> None:
    """JSON merge patch of status fields (lists such as conditions are replaced whole)."""
    try:
        _custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURALS[kind], name,
                                                        {"status": fields})
    except ApiException as error:
        if error.status != 404:  # deleted meanwhile: nothing to report on
            raise


def emit_event(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event about `obj`; failures are logged, never fatal (events are best-effort)."""
    metadata = obj["metadata"]
    now = now_rfc3339()
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}", "namespace": metadata["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": metadata["name"],
                           "namespace": metadata["namespace"], "uid": metadata.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": "personalai-operator"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": "personalai-operator", "reportingInstance": "personalai-operator",
    }
    try:
        _core().create_namespaced_event(metadata["namespace"], kubernetes.client.CoreV1Event.model_validate(event))
    except ApiException as error:
        log.warning("could not post event %s on %s/%s: HTTP %s", reason, metadata["namespace"], metadata["name"],
                    error.status)


# ---- serving: converge, clean up, nodes ---------------------------------------------------------

def _differs(desired: Any, actual: Any) -> bool:
    """True when a field `desired` sets has another value in `actual` (fields the server adds are ignored)."""
    if isinstance(desired, dict):
        return not isinstance(actual, dict) or any(_differs(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(actual, list) or len(desired) != len(actual)
                or any(_differs(d, a) for d, a in zip(desired, actual)))
    return desired != actual and not (isinstance(desired, int) and str(desired) == str(actual))


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create `manifest`, or patch the existing object when a field it sets has drifted (no-op otherwise)."""
    existing, created = create_if_absent(manifest)
    if created:
        return existing
    body: dict[str, Any] = {key: manifest[key] for key in ("spec", "data") if key in manifest}
    body["metadata"] = {"labels": manifest["metadata"].get("labels", {})}
    if not _differs(body, existing):
        return existing
    api, suffix = _api_for(manifest["kind"])
    metadata = manifest["metadata"]
    log.info("updating %s %s/%s", manifest["kind"], metadata["namespace"], metadata["name"])
    patched = getattr(api, f"patch_namespaced_{suffix}")(metadata["name"], metadata["namespace"], body)
    return _sanitized(patched)


def delete_if_present(kind: str, namespace: str, name: str) -> None:
    """Delete the object and, through the garbage collector, what it owns (Background: the API's own
    default for a Job orphans its pods, which would leave a trainer running)."""
    try:
        if kind in PLURALS:
            _custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name,
                                                      propagation_policy="Background")
            return
        api, suffix = _api_for(kind)
        getattr(api, f"delete_namespaced_{suffix}")(name, namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise


def list_nodes() -> list[dict[str, Any]]:
    return _sanitized(_core().list_node()).get("items", [])


def list_all_pods(field_selector: str | None = None) -> list[dict[str, Any]]:
    """Pods in every namespace: model slots are a node's, whoever's pods hold them."""
    return _sanitized(_core().list_pod_for_all_namespaces(field_selector=field_selector)).get("items", [])


def patch_node_status(name: str, patch: dict[str, Any]) -> None:
    _core().patch_node_status(name, patch)
