"""Prometheus metrics of the gateway (its own registry): requests by route template and status, open
streams by kind. Labels are route templates and numbers, never a path, a person or their words."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("personalai_gateway_requests", "HTTP requests by route template and status code",
                                ["route", "code"], registry=self.registry)
        self.open_streams = Gauge("personalai_gateway_open_streams", "Streams open now: metrics (SSE of a run's "
                                  "progress) and chat (streamed replies passed through)", ["kind"], registry=self.registry)
        self.known_tokens = Gauge("personalai_gateway_known_tokens", "PersonalAIs with a published token hash",
                                  registry=self.registry)


class CountRequests:
    """ASGI middleware: one count per HTTP request, labelled with the route it matched (its template)."""

    def __init__(self, app, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        code = [500]  # what a request that raised before answering counts as

        async def noting_the_status(message):
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_the_status)
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route=template, code=str(code[0])).inc()
