"""A watch cache of the objects the operator reads on every pass, so an idle pass asks the API nothing.

One informer thread per (kind, scope): a LIST, then a WATCH from its resourceVersion (bookmarks keep
that current; 410 Gone relists). The scope is the cluster when the operator watches every namespace
or a pattern of them (objects outside the patterns are dropped), else one informer per namespace.
A kind the credentials may not list and watch (403) is simply not cached: kube.py asks the API.

What is stored, and why it is safe:
- Only what the operator made (label app.kubernetes.io/managed-by), the PersonalAIs and TrainingRuns,
  EndpointSlices and pods, each without managedFields or the last-applied annotation (a client-side
  `kubectl apply` copies a whole Secret into it), kept as compact JSON: a read decodes a copy of its
  own (faster than copying dicts), and 1,000 PersonalAIs' objects take a sixth of the memory they
  take as dicts (a trainer Job: 4.5 KB against 28 KB). The only Secrets held whole are the operator's own
  (the person's token); every other Secret is watched as metadata only (PartialObjectMetadata), so
  reflections never enter the cache.
- A stale answer never makes a wrong action stick: a create on a stale miss gets 409 (kube.py then
  reads the object), a stale hit is re-read at the next event or resync, and decisions that cannot be
  undone (erasure's "all gone", a refusal, a prune) re-read the API first (`fresh=True` in kube.py).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes

from personalai_operator.models import GROUP, VERSION
from personalai_operator.naming import LABEL_MANAGED_BY, MANAGER

log = logging.getLogger(__name__)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Metadata only, no fallback to whole objects (a server that cannot answers 406: that kind is not cached).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"  # a watch's events are one each
WATCH_SECONDS = 300  # the API server ends each watch after this; the informer resumes from its resourceVersion
RETRY_SECONDS = 2.0
OURS = f"{LABEL_MANAGED_BY}={MANAGER}"


@dataclass(frozen=True)
class Source:
    """Where a kind is listed and watched, which of its objects, and in what shape they are kept."""

    kind: str
    prefix: str  # the API group's path: /api/v1, /apis/batch/v1 ...
    plural: str
    selector: str = ""
    metadata_only: bool = False


SOURCES = {source.kind: source for source in (
    Source("PersonalAI", f"/apis/{GROUP}/{VERSION}", "personalais"),
    Source("TrainingRun", f"/apis/{GROUP}/{VERSION}", "trainingruns"),
    Source("Job", "/apis/batch/v1", "jobs", OURS),
    Source("Pod", "/api/v1", "pods"),
    Source("PersistentVolumeClaim", "/api/v1", "persistentvolumeclaims", OURS),
    Source("ConfigMap", "/api/v1", "configmaps", OURS),
    Source("ServiceAccount", "/api/v1", "serviceaccounts", OURS),
    Source("Service", "/api/v1", "services", OURS),
    Source("Secret", "/api/v1", "secrets", OURS),
    Source("SecretMetadata", "/api/v1", "secrets", metadata_only=True),
    Source("Role", "/apis/rbac.authorization.k8s.io/v1", "roles", OURS),
    Source("RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings", OURS),
    Source("Deployment", "/apis/apps/v1", "deployments", OURS),
    Source("EndpointSlice", "/apis/discovery.k8s.io/v1", "endpointslices"),
)}


def trim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as kept: no managedFields, no last-applied copy; a pod only as far as the operator
    reads pods (placement, resources, phase and conditions, owners)."""
    metadata = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "managedFields"}
    annotations = {key: value for key, value in (metadata.get("annotations") or {}).items() if key != LAST_APPLIED}
    metadata["annotations"] = annotations
    kept = {**obj, "metadata": metadata}
    if kind == "Pod":
        spec = obj.get("spec") or {}
        kept["spec"] = {"nodeName": spec.get("nodeName"),
                        "containers": [{"name": c.get("name"), "resources": c.get("resources") or {}}
                                       for c in spec.get("containers") or []]}
    return kept


def accept_header(source: Source, watching: bool) -> str:
    """What to ask for: a metadata-only kind's LIST wants the list form, its WATCH the single form
    (asked for the list form, a watch sends no events at all)."""
    if not source.metadata_only:
        return "application/json"
    return METADATA_WATCH if watching else METADATA_LIST


def newer(version: str | None, than: str | None) -> bool:
    """Whether resourceVersion `version` is later than `than`. Opaque by contract, etcd revisions in
    practice: compared as numbers when both are, else the one at hand counts as newer."""
    if version and than and version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return True


@dataclass(frozen=True, slots=True)
class Stored:
    """An object as an informer keeps it: its trimmed JSON, and what matching and ordering need."""

    uid: str | None
    version: str | None
    labels: dict[str, str]
    raw: bytes

    @classmethod
    def of(cls, kind: str, obj: dict[str, Any]) -> Stored:
        kept = trim(kind, obj)
        metadata = kept["metadata"]
        return cls(metadata.get("uid"), metadata.get("resourceVersion"), dict(metadata.get("labels") or {}),
                   json.dumps(kept, separators=(",", ":")).encode())

    def load(self) -> dict[str, Any]:
        """A copy of the object for the caller to keep or change."""
        return json.loads(self.raw)

    def has(self, labels: dict[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in labels.items())


def selector_labels(selector: str) -> dict[str, str]:
    """The labels an equality selector ("a=b,c=d") asks for."""
    return dict(part.split("=", 1) for part in selector.split(",") if part)


def matches(obj: dict[str, Any], namespace: str | None, labels: dict[str, str]) -> bool:
    metadata = obj["metadata"]
    have = metadata.get("labels") or {}
    return (namespace is None or metadata.get("namespace") == namespace) and \
        all(have.get(key) == value for key, value in labels.items())


class Informer:
    """A kind's objects in one scope, kept current by LIST + WATCH on a thread of its own."""

    def __init__(self, source: Source, namespace: str | None, keep: Callable[[str], bool],
                 client_factory: Callable[[], kubernetes.client.ApiClient]):
        self.source, self.namespace, self.keep = source, namespace, keep
        self._client_factory = client_factory
        self._objects: dict[tuple[str, str], Stored] = {}
        # uids the operator deleted itself, until the watch says DELETED: late events of them are ignored
        self._deleted: set[str] = set()
        self._lock = threading.Lock()
        self.ready = threading.Event()  # the first LIST is in
        self.refused = False  # 403/404: not cached, kube.py asks the API
        self._stop = threading.Event()

    # ---- reads (any thread) --------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._objects.get((namespace, name))
        return stored.load() if stored is not None else None

    def select(self, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            found = [stored for key, stored in self._objects.items()
                     if (namespace is None or key[0] == namespace) and stored.has(labels)]
        return [stored.load() for stored in found]

    def __len__(self) -> int:
        return len(self._objects)

    # ---- what the operator itself just did (any thread) ------------------------------------------

    def remember(self, obj: dict[str, Any]) -> None:
        """An object the API just returned (a create, a read after 409): known before its watch event,
        so the next pass does not create it again. Only objects this informer would hold."""
        metadata = obj.get("metadata") or {}
        key = (metadata.get("namespace") or "", metadata.get("name") or "")
        if not (self.keep(key[0]) and matches(obj, None, selector_labels(self.source.selector))):
            return
        with self._lock:
            if key not in self._objects and metadata.get("uid") not in self._deleted:
                self._objects[key] = Stored.of(self.source.kind, obj)

    def observe(self, event_type: str, obj: dict[str, Any]) -> None:
        """An event kopf has just handed a handler: into the store unless it holds a newer version, so
        the reconcile that event starts never reads an older one (two watches arrive in any order)."""
        metadata = obj.get("metadata") or {}
        key = (metadata.get("namespace") or "", metadata.get("name") or "")
        if not (self.keep(key[0]) and matches(obj, None, selector_labels(self.source.selector))):
            return
        with self._lock:
            stored = self._objects.get(key)
            if event_type == "DELETED":
                if stored is not None and stored.uid == metadata.get("uid"):
                    del self._objects[key]
            elif metadata.get("uid") not in self._deleted and (
                    stored is None or newer(metadata.get("resourceVersion"), stored.version)):
                self._objects[key] = Stored.of(self.source.kind, obj)

    def forget(self, namespace: str, name: str) -> None:
        """The operator deleted it: gone from reads now, whatever the watch still has on its way."""
        with self._lock:
            stored = self._objects.pop((namespace, name), None)
            if stored is not None and stored.uid:
                self._deleted.add(stored.uid)

    # ---- the stream (its own thread) -----------------------------------------------------------

    def apply_event(self, kind: str, obj: dict[str, Any]) -> str | None:
        """One watch event into the store; returns the resourceVersion to resume from."""
        metadata = obj.get("metadata") or {}
        if kind == "BOOKMARK":
            return metadata.get("resourceVersion")
        key = (metadata.get("namespace") or "", metadata.get("name") or "")
        with self._lock:
            stored = self._objects.get(key)
            if kind == "DELETED":
                self._deleted.discard(metadata.get("uid"))
                if stored is not None and stored.uid in (None, metadata.get("uid")):
                    del self._objects[key]  # that object only: a successor of its name (remembered) stays
            elif not self.keep(key[0]):
                self._objects.pop(key, None)
            elif metadata.get("uid") not in self._deleted:
                self._objects[key] = Stored.of(self.source.kind, obj)
        return metadata.get("resourceVersion")

    def replace(self, items: list[dict[str, Any]]) -> None:
        kept = {((item["metadata"].get("namespace") or ""), item["metadata"]["name"]): Stored.of(self.source.kind, item)
                for item in items if self.keep(item["metadata"].get("namespace") or "")}
        with self._lock:
            self._objects = kept  # the list is the truth: what it still has is still there
            self._deleted.clear()

    def _path(self) -> str:
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{self.source.prefix}{scope}/{self.source.plural}"

    def _query(self, **params: Any) -> list[tuple[str, Any]]:
        query = [(key, value) for key, value in params.items() if value not in (None, "")]
        return [*query, ("labelSelector", self.source.selector)] if self.source.selector else query

    def _request(self, client: kubernetes.client.ApiClient, query: list[tuple[str, Any]], timeout: float) -> Any:
        """GET the collection (raw JSON, never typed models); the urllib3 response, its body unread."""
        accept = accept_header(self.source, watching=("watch", "true") in query)
        method, url, headers, _, _ = client.param_serialize("GET", self._path(), query_params=query,
                                                             header_params={"Accept": accept},
                                                             auth_settings=["BearerToken"])
        response = client.call_api(method, url, header_params=headers, _request_timeout=(10, timeout))
        if response.status >= 400:
            response.read()
            raise kubernetes.client.ApiException(status=response.status, reason=response.reason)
        return response.response

    def _list(self, client: kubernetes.client.ApiClient) -> str:
        body = json.loads(self._request(client, self._query(), 60).read())
        self.replace(body.get("items") or [])
        self.ready.set()
        return body["metadata"]["resourceVersion"]

    def _watch(self, client: kubernetes.client.ApiClient, version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        query = self._query(watch="true", resourceVersion=version, allowWatchBookmarks="true",
                            timeoutSeconds=WATCH_SECONDS)
        response = self._request(client, query, WATCH_SECONDS + 30)
        try:
            for line in kubernetes.watch.watch.iter_resp_lines(response):
                event = json.loads(line)
                yield event["type"], event["object"]
        finally:
            response.release_conn()

    def allowed(self, client: kubernetes.client.ApiClient) -> bool:
        """Whether these credentials may list and watch the kind in this scope, asked with a
        SelfSubjectAccessReview (any authenticated client may): a kind the chart's RBAC leaves out
        is then never requested, so no refused request reaches the API server's audit log."""
        group = self.source.prefix.removeprefix("/apis/").rsplit("/", 1)[0] if self.source.prefix != "/api/v1" else ""
        api = kubernetes.client.AuthorizationV1Api(client)
        for verb in ("list", "watch"):
            review = kubernetes.client.V1SelfSubjectAccessReview(spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    namespace=self.namespace or "", verb=verb, group=group, resource=self.source.plural)))
            status = api.create_self_subject_access_review(review).status
            if not (status and status.allowed):
                return False
        return True

    def run(self) -> None:
        client = self._client_factory()
        version: str | None = None
        try:
            permitted = self.allowed(client)
        except Exception as error:  # the review itself failed: try the list, whose refusal is handled below
            log.info("could not ask whether %s may be watched (%s)", self.source.kind, type(error).__name__)
            permitted = True
        if not permitted:
            log.info("not caching %s: these credentials may not list and watch it; reads go to the API",
                     self.source.kind)
            self.refused = True
            return
        while not self._stop.is_set():
            try:
                version = version or self._list(client)
                for kind, obj in self._watch(client, version):
                    if kind == "ERROR":  # 410 Gone, mostly: the resourceVersion is too old
                        version = None
                        break
                    version = self.apply_event(kind, obj) or version
            except kubernetes.client.ApiException as error:
                if error.status in (403, 404, 406):  # not ours to list and watch: reads go to the API
                    log.info("not caching %s (HTTP %s): reads go to the API", self.source.kind, error.status)
                    self.refused = True
                    self.ready.clear()
                    return
                log.warning("watch of %s failed (HTTP %s); relisting", self.source.kind, error.status)
                version = None
                self._stop.wait(RETRY_SECONDS)
            except Exception as error:  # a dropped connection: resume (or relist) after a pause
                log.warning("watch of %s interrupted (%s)", self.source.kind, type(error).__name__)
                self._stop.wait(RETRY_SECONDS)

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"watch-{self.source.kind}-{self.namespace or '*'}",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def is_pattern(namespace: str) -> bool:
    return any(char in namespace for char in "*?[")


class WatchCache:
    """The informers for the watched namespaces: cluster-wide when every namespace or a pattern is
    watched (keeping only matching namespaces), else one per namespace."""

    def __init__(self, namespaces: list[str], client_factory: Callable[[], kubernetes.client.ApiClient],
                 kinds: list[str] | None = None):
        cluster_wide = not namespaces or any(is_pattern(name) for name in namespaces)

        def keep(namespace: str) -> bool:
            return not namespaces or any(fnmatch.fnmatchcase(namespace, pattern) for pattern in namespaces)

        def keep_all(namespace: str) -> bool:
            return True

        self.informers: dict[tuple[str, str | None], Informer] = {}
        for kind in kinds or list(SOURCES):
            # Pods of every namespace: a node's model slots are held by whoever's pods (kube.list_all_pods).
            kept = keep_all if kind == "Pod" else keep
            for scope in ([None] if cluster_wide else namespaces):
                self.informers[(kind, scope)] = Informer(SOURCES[kind], scope, kept, client_factory)

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()

    def stop(self) -> None:
        for informer in self.informers.values():
            informer.stop()

    def informer(self, kind: str, namespace: str | None) -> Informer | None:
        """The ready informer that holds `kind` in `namespace` (None: every namespace), or None: ask the API."""
        found = self.informers.get((kind, None))
        if found is None and namespace:
            found = self.informers.get((kind, namespace))
        return found if found is not None and found.ready.is_set() else None

    def wait_ready(self, timeout: float) -> bool:
        """True once every informer has listed or been refused (bounded by `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        for informer in self.informers.values():
            while not (informer.ready.is_set() or informer.refused) and time.monotonic() < deadline:
                informer.ready.wait(0.1)
        return all(informer.ready.is_set() or informer.refused for informer in self.informers.values())

    def sizes(self) -> dict[str, int]:
        return {f"{kind}/{scope or '*'}": len(informer) for (kind, scope), informer in self.informers.items()}


_cache: WatchCache | None = None


def install(cache: WatchCache | None) -> WatchCache | None:
    """The process's cache (started by the startup handler; None: every read goes to the API).
    Returns the one it replaces."""
    global _cache
    previous, _cache = _cache, cache
    return previous


def informer(kind: str, namespace: str | None) -> Informer | None:
    return _cache.informer(kind, namespace) if _cache is not None else None


def observe(kind: str, event_type: str | None, body: Any) -> None:
    """Hand the cache what a kopf event handler was given (see Informer.observe)."""
    obj = dict(body)
    found = informer(kind, (obj.get("metadata") or {}).get("namespace"))
    if found is not None:
        found.observe(event_type or "MODIFIED", obj)  # stored as its JSON: kopf's body is not kept
