"""A small reverse proxy in front of the dev API server that a test can switch to answer 500 or 429.

The operator under test gets a kubeconfig pointing here (plain HTTP on loopback); the proxy forwards
to the real API server with the dev kubeconfig's client certificate, streaming responses (watches
included). While a fault is on, it answers the requests of the operator's own Kubernetes client (the
reconciles) with the fault instead; kopf's watches and bookkeeping still pass, so what a test sees is
the operator's retry policy, not kopf's.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from cluster_harness import free_port

# The kubernetes package's default User-Agent; kopf's is "kopf/<version>".
OPERATOR_CLIENT_AGENT = "OpenAPI-Generator/"
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "content-encoding",
              "keep-alive"}


class FaultProxy:
    def __init__(self, kubeconfig: Path, workdir: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.upstream = cluster["server"].rstrip("/")
        paths = {}
        for name, key in (("ca.crt", "certificate-authority-data"), ("client.crt", "client-certificate-data"),
                          ("client.key", "client-key-data")):
            paths[name] = workdir / name
            paths[name].write_bytes(base64.b64decode(cluster.get(key) or user[key]))
            paths[name].chmod(0o600)
        self.ssl = ssl.create_default_context(cafile=str(paths["ca.crt"]))
        self.ssl.load_cert_chain(str(paths["client.crt"]), str(paths["client.key"]))
        self.port = free_port()
        self.kubeconfig = workdir / "kubeconfig-via-proxy"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "via-proxy",
            "clusters": [{"name": "via-proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "via-proxy", "user": {"token": "the-proxy-authenticates-upstream"}}],
            "contexts": [{"name": "via-proxy", "context": {"cluster": "via-proxy", "user": "via-proxy"}}]}))
        self.faulted: Counter[int] = Counter()  # answers given instead of the API's, by status
        self._fault: tuple[int, int | None] | None = None
        self._fault_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def fail(self, status: int, seconds: float, retry_after: int | None = None) -> None:
        """Answer the operator's client with `status` (and Retry-After) for the next `seconds`."""
        self._fault, self._fault_until = (status, retry_after), time.monotonic() + seconds

    def heal(self) -> None:
        self._fault = None

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)  # open watches are not waited for
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _close(self) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    def _faulting(self, request: web.Request) -> tuple[int, int | None] | None:
        if self._fault is None or time.monotonic() >= self._fault_until:
            return None
        if not request.headers.get("User-Agent", "").startswith(OPERATOR_CLIENT_AGENT):
            return None
        return self._fault

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        fault = self._faulting(request)
        if fault is not None:
            status, retry_after = fault
            self.faulted[status] += 1
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                    "reason": "TooManyRequests" if status == 429 else "InternalError", "message": "injected fault"}
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.json_response(body, status=status, headers=headers)
        assert self._session is not None
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() not in HOP_BY_HOP and key.lower() != "authorization"}
        headers["Accept-Encoding"] = "identity"  # else aiohttp asks for gzip, and we pass bodies through as they are
        # The body as it came, with no Content-Type of aiohttp's: the API server reads none as JSON, and
        # aiohttp's own default (octet-stream) as a 415.
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read() or None, ssl=self.ssl,
                                         skip_auto_headers=("Content-Type",)) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                key: value for key, value in upstream.headers.items() if key.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client went away (a watch it stopped): nothing left to pass on
            return response
