"""ASGI middleware: a cap on request body size, and request counting for /metrics.

The size cap reads the declared Content-Length first and also counts streamed bytes, so a chunked
upload cannot slip past it. Nothing here looks at, or logs, the body's content.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException

from .metrics import ServerMetrics


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is over limits.maxRequestBytes ({limit})")


class RequestSizeLimit:
    def __init__(self, app, max_bytes_of):
        self.app = app
        # A callable so a reloaded config applies without rebuilding the app.
        self.max_bytes_of = max_bytes_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes_of()
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_too_large(send, limit)
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await send_too_large(send, limit)


async def send_too_large(send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "request_too_large", "message": f"request body is over limits.maxRequestBytes ({limit})", "field": "body"}}
    ).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Counts every HTTP request by its route template (not its path: ids would explode the labels)."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=template, method=scope["method"], status=str(status["code"])).inc()
