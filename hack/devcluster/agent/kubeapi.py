"""The only module of the development node agent that talks to the Kubernetes API.

Objects come back as plain dicts (the API's own JSON), every call has a timeout, and errors are
reported by status code and reason only: response bodies can echo a pod's spec, which may hold
personal data.
"""

from __future__ import annotations

import datetime
import json

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

REQUEST_TIMEOUT = 15
LEASE_NAMESPACE = "kube-node-lease"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


def describe(error: Exception) -> str:
    """A short, content-free description of an API error for logs."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return type(error).__name__


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeApi:
    def __init__(self, kubeconfig: str) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 32  # one worker thread per pod, plus watch and heartbeat
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self.host = configuration.host

    def _json(self, response) -> dict:
        return json.loads(response.data)

    def _read(self, call, *args) -> dict | None:
        try:
            return self._json(call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # -- node ----------------------------------------------------------------------------------
    def read_node(self, name: str) -> dict | None:
        return self._read(self.core.read_node, name)

    def create_node(self, node: dict) -> dict:
        return self._json(self.core.create_node(node, _preload_content=False, _request_timeout=REQUEST_TIMEOUT))

    def patch_node_status(self, name: str, patch: dict) -> None:
        """A strategic merge patch: conditions merge by type, capacity is left as it is."""
        self.core.patch_node_status(name, patch, _content_type=STRATEGIC_PATCH, _preload_content=False,
                                    _request_timeout=REQUEST_TIMEOUT)

    def renew_lease(self, node: dict, duration_seconds: int) -> None:
        name = node["metadata"]["name"]
        now = _micro_time()
        try:
            self.coordination.patch_namespaced_lease(name, LEASE_NAMESPACE, {"spec": {"renewTime": now, "holderIdentity": name,
                                                                                     "leaseDurationSeconds": duration_seconds}},
                                                     _content_type=MERGE_PATCH, _preload_content=False,
                                                     _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status != 404:
                raise
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [
                         {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]},
                     "spec": {"holderIdentity": name, "leaseDurationSeconds": duration_seconds, "renewTime": now}}
            self.coordination.create_namespaced_lease(LEASE_NAMESPACE, lease, _preload_content=False,
                                                      _request_timeout=REQUEST_TIMEOUT)

    # -- pods ----------------------------------------------------------------------------------
    def list_pods(self, node: str) -> tuple[list[dict], str]:
        listing = self._json(self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}", _preload_content=False, _request_timeout=REQUEST_TIMEOUT))
        return listing["items"], listing["metadata"]["resourceVersion"]

    def watch_pods(self, node: str, resource_version: str, timeout_seconds: int):
        """(event type, pod dict) until the server closes the watch; ApiException 410 means re-list."""
        stream = watch.Watch().stream(self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}",
                                      resource_version=resource_version, timeout_seconds=timeout_seconds,
                                      allow_watch_bookmarks=False, _request_timeout=timeout_seconds + 10)
        for event in stream:
            if event["type"] == "ERROR":
                raw = event.get("raw_object") or {}
                raise ApiException(status=raw.get("code", 500), reason=raw.get("reason", "watch error"))
            yield event["type"], event["raw_object"]

    def patch_pod_status(self, namespace: str, name: str, status: dict) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status}, _content_type=MERGE_PATCH,
                                              _preload_content=False, _request_timeout=REQUEST_TIMEOUT)

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}},
                                       _content_type=MERGE_PATCH, _preload_content=False,
                                       _request_timeout=REQUEST_TIMEOUT)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Remove the pod object now (as kubelet does once its containers are gone); only this very pod."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, grace_period_seconds=0,
                                            _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status not in (404, 409):  # already gone, or a new pod with the same name
                raise

    # -- what volumes and env read -------------------------------------------------------------
    def read_config_map(self, namespace: str, name: str) -> dict | None:
        return self._read(self.core.read_namespaced_config_map, name, namespace)

    def read_secret(self, namespace: str, name: str) -> dict | None:
        return self._read(self.core.read_namespaced_secret, name, namespace)

    def claim_exists(self, namespace: str, name: str) -> bool:
        return self._read(self.core.read_namespaced_persistent_volume_claim, name, namespace) is not None

    def request_token(self, pod: dict, audience: str | None, expiration_seconds: int) -> str:
        """A ServiceAccount token bound to the pod (TokenRequest), as kubelet gets for projected volumes."""
        meta = pod["metadata"]
        spec = {"expirationSeconds": max(expiration_seconds, 600),  # the API's minimum
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]  # none: the API server's own audience
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        response = self.core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default", meta["namespace"], body,
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        return self._json(response)["status"]["token"]
