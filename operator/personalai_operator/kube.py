"""The one module that talks to the Kubernetes API (kopf does its own watching).

Create-if-absent is the only way children are made: a 409 AlreadyExists means another pass (a
restarted operator, a timer racing an event) made it first, and the existing object is used.
Reads come from the watch cache (watch_cache.py) where it holds the kind, so an idle pass asks the
API nothing; `fresh=True` asks the API, for the reads that decide something that cannot be undone.
Requests are paced by a token bucket (PERSONALAI_API_QPS / PERSONALAI_API_BURST).
Nothing here logs or raises object contents.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, cast
from urllib.parse import urlsplit

import kubernetes
from kubernetes.client.rest import ApiException

from personalai_operator import incluster, metrics, watch_cache
from personalai_operator.conditions import OPERATOR_CONDITION_TYPES, merge_conditions, now_rfc3339
from personalai_operator.models import GROUP, VERSION, ReflectionsSource
from personalai_operator.reflections_access import access_refusal
from personalai_operator.settings import OperatorSettings

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


class TokenBucket:
    """client-go's client-side rate limit: `qps` requests a second on average, `burst` at once. A
    caller past the limit waits its turn (tokens are reserved, so waiters are served in order)."""

    def __init__(self, qps: float, burst: int, clock: Any = time.monotonic, sleep: Any = time.sleep):
        self.qps, self.burst, self._clock, self._sleep = qps, burst, clock, sleep
        self._tokens, self._last = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Spend one token, waiting for it when none is left; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps) - 1
            self._last = now
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)
        return wait


class _PacedApiClient(kubernetes.client.ApiClient):
    """Every request (typed or raw) waits for a token first, and is counted (metrics.API_REQUESTS)."""

    bucket: TokenBucket

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        waited = self.bucket.take()
        if waited:
            metrics.API_THROTTLED.inc(waited)
        code = "error"  # no answer: refused connection, timeout
        try:
            response = super().call_api(method, url, *args, **kwargs)
            code = str(response.status)
            return response
        finally:
            metrics.API_REQUESTS.labels(verb=method, resource=metrics.request_resource(urlsplit(url).path),
                                        code=code).inc()


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster config when in a pod, else $KUBECONFIG (read now, not when the package was imported)."""
    configuration = kubernetes.client.Configuration()
    if incluster.in_cluster():
        incluster.load_config(configuration)
    else:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                           client_configuration=configuration)
    return configuration


def api_client() -> kubernetes.client.ApiClient:
    """One shared, paced client for the handlers' requests; a connection for each kopf worker thread."""
    global _client
    with _lock:
        if _client is None:
            settings = OperatorSettings.from_env()
            configuration = load_configuration()
            configuration.connection_pool_maxsize = settings.workers + 4
            client = _PacedApiClient(configuration)
            client.bucket = TokenBucket(settings.api_qps, settings.api_burst)
            _client = client
        return _client


def watch_client() -> kubernetes.client.ApiClient:
    """A client of its own for one informer: its long watch holds a connection the handlers never wait for."""
    return kubernetes.client.ApiClient(api_client().configuration)


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


def read_metadata(kind: str, namespace: str, name: str, fresh: bool = False) -> dict[str, Any] | None:
    """Only the object's metadata (PartialObjectMetadata), never its data; None when it does not exist.
    A Secret's comes from the metadata-only watch cache unless `fresh`."""
    cached = None if fresh or kind != "Secret" else watch_cache.informer("SecretMetadata", namespace)
    if cached is not None:
        obj = cached.get(namespace, name)
        return _without_data_copies(obj["metadata"]) if obj is not None else None
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
    return _without_data_copies(cast(dict[str, Any], body).get("metadata") or {})


def _without_data_copies(metadata: dict[str, Any]) -> dict[str, Any]:
    # Client-side `kubectl apply` copies a Secret's whole data into this annotation: never keep it.
    kept = {key: value for key, value in metadata.items() if key != "managedFields"}
    kept["annotations"] = {key: value for key, value in (metadata.get("annotations") or {}).items()
                           if key != LAST_APPLIED}
    return kept


def reflections_version(namespace: str, source: ReflectionsSource, personalai: str) -> str:
    """The resourceVersion of the object holding the reflections, from its metadata alone (cached for a
    Secret), when it allows `personalai` to use them; ReflectionsUnavailable otherwise."""
    kind, name = source.kind, source.ref.name
    try:  # a miss is confirmed by the API: the Secret may have been made a moment ago, before its event
        metadata = read_metadata(kind, namespace, name) or read_metadata(kind, namespace, name, fresh=True)
    except ApiException as error:
        raise _unavailable(kind, name, error) from None
    if metadata is None:
        raise ReflectionsUnavailable(f"{kind}NotFound", f"{kind} {name} not found.")
    refusal = access_refusal(kind, name, metadata, personalai)
    if refusal:
        raise ReflectionsUnavailable("ReflectionsNotAllowed", refusal)
    return str(metadata.get("resourceVersion") or "")


def _check_access(kind: str, name: str, metadata: Any, personalai: str) -> None:
    """ReflectionsUnavailable unless the object's metadata, as read with its data, allows `personalai`."""
    refusal = access_refusal(kind, name, _sanitized(metadata), personalai)
    if refusal:
        raise ReflectionsUnavailable("ReflectionsNotAllowed", refusal)


def _unavailable(kind: str, name: str, error: ApiException) -> Exception:
    if error.status == 404:
        return ReflectionsUnavailable(f"{kind}NotFound", f"{kind} {name} not found.")
    if error.status == 403:
        return ReflectionsUnavailable(f"{kind}Forbidden", f"Not allowed to read {kind} {name}.")
    return error


def read_reflections(namespace: str, source: ReflectionsSource, personalai: str) -> bytes:
    """The raw bytes of the reflections key, read only when the Secret allows `personalai` to use it
    (reflections_access); otherwise, or when absent, ReflectionsUnavailable (no content in it)."""
    ref = source.ref
    kind = source.kind
    reflections_version(namespace, source, personalai)  # no data read unless allowed
    try:
        # The data as read now, its access checked again on the same read: the metadata may be cached.
        if kind == "Secret":
            secret = _core().read_namespaced_secret(ref.name, namespace)
            _check_access(kind, ref.name, secret.metadata, personalai)
            encoded = (secret.data or {}).get(ref.key)
            if encoded is not None:
                return base64.b64decode(encoded)
        else:
            config_map = _core().read_namespaced_config_map(ref.name, namespace)
            _check_access(kind, ref.name, config_map.metadata, personalai)
            text = (config_map.data or {}).get(ref.key)
            if text is not None:
                return text.encode("utf-8")
            binary = (config_map.binary_data or {}).get(ref.key)
            if binary is not None:
                return base64.b64decode(binary)
    except ApiException as error:
        raise _unavailable(kind, ref.name, error) from None
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


def get(kind: str, namespace: str, name: str, fresh: bool = False) -> dict[str, Any] | None:
    """The object as a plain dict, or None when it does not exist: from the watch cache when it holds
    the kind (unless `fresh`), else from the API."""
    cached = None if fresh else watch_cache.informer(kind, namespace)
    if cached is not None:
        return cached.get(namespace, name)
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
    cached = watch_cache.informer(kind, namespace)
    known = cached.get(namespace, name) if cached is not None else None
    if known is not None:  # a stale hit is safe: the next event or resync reads it again
        return known, False
    try:
        if kind in PLURALS:
            created = cast(dict[str, Any], _custom().create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                     PLURALS[kind], manifest))
        else:
            api, suffix = _api_for(kind)
            created = _sanitized(getattr(api, f"create_namespaced_{suffix}")(namespace, manifest))
        log.info("created %s %s/%s", kind, namespace, name)
        _remember(kind, created)
        return created, True
    except ApiException as error:
        if error.status == 403 and "being terminated" in (error.body or ""):
            raise NamespaceTerminating(namespace) from None
        if error.status != 409:
            raise
    existing = get(kind, namespace, name, fresh=True)
    if existing is None:  # deleted between our create and get: the next pass creates it
        raise kubernetes.client.ApiException(status=409, reason=f"{kind} {name} is being replaced")
    _remember(kind, existing)
    return existing, False


def _remember(kind: str, obj: dict[str, Any]) -> None:
    """What the API just returned, into the cache before its watch event (the next pass needs no create)."""
    cached = watch_cache.informer(kind, obj["metadata"].get("namespace"))
    if cached is not None:
        cached.remember(obj)


def list_objects(kind: str, namespace: str, labels: dict[str, str], fresh: bool = False) -> list[dict[str, Any]]:
    """The kind's objects in `namespace` with all of `labels`: from the watch cache unless `fresh`."""
    cached = None if fresh else watch_cache.informer(kind, namespace)
    if cached is not None:
        return cached.select(namespace, labels)
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    if kind in PLURALS:
        result = cast(dict[str, Any], _custom().list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                              PLURALS[kind], label_selector=selector))
        return result.get("items", [])
    api, suffix = _api_for(kind)
    result = getattr(api, f"list_namespaced_{suffix}")(namespace, label_selector=selector)
    return _sanitized(result).get("items", [])


STATUS_CONFLICT_ATTEMPTS = 5


def patch_status(kind: str, namespace: str, name: str, fields: dict[str, Any],
                 read_as: dict[str, Any] | None = None) -> None:
    """JSON merge patch of status fields that loses no other writer's condition.

    A merge patch replaces the conditions list whole, so ours are merged by type into the object as
    the API has it now, and the patch carries that copy's resourceVersion: a write in between is a
    409, and we read and merge again. `read_as`: the object as this pass read it from the API
    (`fresh=True`), merged against first, so a pass whose object nobody changed reads it only once;
    otherwise it is read here, past any cache (a stale copy only buys a conflict)."""
    api = _custom()
    for attempt in range(1, STATUS_CONFLICT_ATTEMPTS + 1):
        try:
            body: dict[str, Any] = {"status": fields}
            if "conditions" in fields:
                # The object, not its status subresource: `get` on the kind is granted, on /status it is not.
                latest = read_as if attempt == 1 and read_as is not None else cast(
                    dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name))
                conditions = merge_conditions((latest.get("status") or {}).get("conditions"), fields["conditions"],
                                              OPERATOR_CONDITION_TYPES[kind])
                body = {"metadata": {"resourceVersion": latest["metadata"]["resourceVersion"]},
                        "status": {**fields, "conditions": conditions}}
            api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURALS[kind], name, body)
            return
        except ApiException as error:
            if error.status == 404:  # deleted meanwhile: nothing to report on
                return
            if error.status != 409 or attempt == STATUS_CONFLICT_ATTEMPTS:
                raise
            log.debug("status of %s %s/%s changed under us; merging again", kind, namespace, name)


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
            return  # (the `finally` below still forgets it)
        api, suffix = _api_for(kind)
        getattr(api, f"delete_namespaced_{suffix}")(name, namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise
    finally:
        _forget(kind, namespace, name)


def _forget(kind: str, namespace: str, name: str) -> None:
    """Deleted by us: out of the cache now, so the next pass cannot find the old object (a restarted
    run's fresh Job must not be mistaken for its failed predecessor)."""
    cached = watch_cache.informer(kind, namespace)
    if cached is not None:
        cached.forget(namespace, name)


def list_nodes() -> list[dict[str, Any]]:
    return _sanitized(_core().list_node()).get("items", [])


def list_all_pods(node: str | None = None) -> list[dict[str, Any]]:
    """Pods in every namespace (on `node` only, when given): model slots are a node's, whoever's pods
    hold them. From the cluster-wide pod cache when the operator watches every namespace."""
    cached = watch_cache.informer("Pod", None)
    if cached is not None:
        return [pod for pod in cached.select(None, {}) if node is None or pod["spec"].get("nodeName") == node]
    field_selector = f"spec.nodeName={node}" if node else None
    return _sanitized(_core().list_pod_for_all_namespaces(field_selector=field_selector)).get("items", [])


def patch_node_status(name: str, patch: dict[str, Any]) -> None:
    _core().patch_node_status(name, patch)
