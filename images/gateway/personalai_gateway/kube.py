"""The one module that talks to the Kubernetes API: httpx, async, with the pod's or $KUBECONFIG's credentials.

What the gateway may do (the chart's Role): get, list and watch PersonalAIs, TrainingRuns and
EndpointSlices; merge-patch a PersonalAI's spec. It never reads a Secret. Nothing here logs an
object's content; an API refusal becomes `KubeError` with the HTTP status and the API's reason only.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from personalai_contracts.endpoints import SERVICE_NAME_LABEL, ready_address
from personalai_contracts.paths import resolve

GROUP_VERSION = "personalai.dev/v1alpha1"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LABEL_PERSONALAI = "personalai.dev/personalai"
# A watch is re-opened this often even when quiet, so a half-dead connection is noticed.
WATCH_SECONDS = 240


class KubeError(Exception):
    """An API refusal: its status, reason and, for an invalid object, the paths of the fields at fault
    (the API's messages are left out: they may quote the values)."""

    def __init__(self, status: int, reason: str, fields: tuple[str, ...] = ()):
        super().__init__(f"Kubernetes API answered {status} {reason}" + (f" ({', '.join(fields)})" if fields else ""))
        self.status = status
        self.reason = reason
        self.fields = fields


@dataclass(frozen=True)
class Credentials:
    server: str
    verify: ssl.SSLContext
    token_file: Path | None = None  # in a pod: re-read for each request (bound tokens rotate)
    headers: tuple[tuple[str, str], ...] = ()

    def auth_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.token_file is not None:
            headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
        return headers


def credentials() -> Credentials:
    """In a pod (the dev node agent lays the ServiceAccount files under the path prefix), else $KUBECONFIG."""
    token = resolve(f"{SERVICE_ACCOUNT_DIR}/token")
    if os.environ.get("KUBERNETES_SERVICE_HOST") and token.exists():
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        context = ssl.create_default_context(cafile=str(resolve(f"{SERVICE_ACCOUNT_DIR}/ca.crt")))
        return Credentials(f"https://{host}:{port}", context, token_file=token)
    import kubernetes  # its loader understands every kubeconfig shape (embedded or file certs, tokens, exec)

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    # A token user: the client's auth settings hold the header it would send (with its "Bearer " prefix).
    settings = cast(dict[str, dict[str, str]], configuration.auth_settings())
    headers = tuple((setting["key"], setting["value"]) for setting in settings.values()
                    if setting.get("in") == "header" and setting.get("value"))
    return Credentials(configuration.host, context, headers=headers)


def _path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{plural}" if namespace else f"/apis/{GROUP_VERSION}/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    def __init__(self, creds: Credentials):
        self.creds = creds
        self.http = httpx.AsyncClient(base_url=creds.server, verify=creds.verify,
                                      timeout=httpx.Timeout(15.0, read=WATCH_SECONDS + 30))

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict:
        response = await self.http.request(method, path, headers={**self.creds.auth_headers(),
                                                                  **kwargs.pop("headers", {})}, **kwargs)
        if response.status_code >= 400:
            raise _error(response.status_code, response.content)
        return response.json()

    # ---- PersonalAIs and TrainingRuns ---------------------------------------------------------

    async def get_personalai(self, namespace: str, name: str) -> dict:
        return await self._request("GET", _path(namespace, "personalais", name))

    async def patch_personalai_spec(self, namespace: str, name: str, spec: dict) -> dict:
        """A JSON merge patch of the PersonalAI's spec (only the keys given change)."""
        return await self._request("PATCH", _path(namespace, "personalais", name), content=json.dumps({"spec": spec}),
                                   headers={"Content-Type": "application/merge-patch+json"})

    async def list(self, namespace: str, plural: str, selector: str | None = None) -> dict:
        """The list (with its resourceVersion, for a watch from there); namespace "": every namespace."""
        return await self._request("GET", _path(namespace, plural), params=_selector(selector))

    async def trainingruns_of(self, namespace: str, personalai: str) -> dict:
        return await self.list(namespace, "trainingruns", f"{LABEL_PERSONALAI}={personalai}")

    async def watch(self, namespace: str, plural: str, resource_version: str,
                    selector: str | None = None, seconds: int = WATCH_SECONDS) -> AsyncIterator[dict]:
        """Watch events ({"type", "object"}) from `resource_version`, until the API server ends the watch.
        A 410 Gone (too old a version) comes as KubeError(410, ...): list again."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(seconds), **_selector(selector)}
        async with self.http.stream("GET", _path(namespace, plural), params=params,
                                    headers=self.creds.auth_headers()) as response:
            if response.status_code >= 400:
                raise _error(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(int(status.get("code") or 500), str(status.get("reason") or "WatchError"))
                yield event

    # ---- the chat server ------------------------------------------------------------------------

    async def ready_endpoint(self, namespace: str, service: str, port_name: str = "http") -> str | None:
        """host:port of a ready endpoint of `service` (from its EndpointSlices), or None."""
        slices = await self._request("GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                                     params={"labelSelector": f"{SERVICE_NAME_LABEL}={service}"})
        return ready_address(slices.get("items", []), port_name)


def _selector(selector: str | None) -> dict[str, str]:
    return {"labelSelector": selector} if selector else {}


def _error(status: int, body: bytes) -> KubeError:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    causes = (answer.get("details") or {}).get("causes") or []
    fields = tuple(str(cause["field"]) for cause in causes if isinstance(cause, dict) and cause.get("field"))
    return KubeError(status, str(answer.get("reason") or "Error"), fields)
