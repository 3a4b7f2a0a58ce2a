"""The gateway's audit stream: who reached which person's API, when, with what outcome; never what was sent.

One JSON line per event (personalai_contracts.audit), e.g.
  {"time":"2026-12-01T15:30:00.123Z","event":"auth","component":"gateway","outcome":"failure",
   "client":"10.0.0.7","method":"GET","route":"/api/training/status","reason":"unknown_token"}

Events:
- `auth` (HTTP requests and the chat WebSocket; method WEBSOCKET) failure: reason `no_token` or `unknown_token` (a token no PersonalAI has, or one rotated out);
  the token and any part of its hash are never recorded.
- `auth` success: the first per token in each `success_interval` seconds (every request would flood
  the stream with one line per chat poll); the token is told apart in memory only, by its hash.
- `authz` failure, reason `userid_mismatch`: a body's userId named another PersonalAI (the 403).
- `training.start` (an admin action): the brief's knobs that were set, by name, and their values,
  which are only numbers, booleans and "auto" once the start body is validated.
- `chat.session.create` / `chat.session.delete`: seen through the proxy, the method, route template
  and the chat server's status; never the body or the session's title.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from starlette.requests import HTTPConnection, Request

from personalai_contracts.audit import AuditLog

from .tokens import Person

FIELDS = frozenset({"namespace", "personalai", "client", "method", "route", "reason", "status", "knobs", "config"})
# The chat server's session routes, as the gateway passes them through (path after /api/ai-echo/).
SESSION_EVENTS = {("POST", "sessions"): ("chat.session.create", "/api/ai-echo/sessions"),
                  ("DELETE", "sessions/{sessionId}"): ("chat.session.delete", "/api/ai-echo/sessions/{sessionId}")}


def chat_route(method: str, path: str) -> tuple[str, str] | None:
    """(event, route template) of a proxied session create or delete, else None."""
    parts = path.strip("/").split("/")
    template = "/".join(["sessions", "{sessionId}"][: len(parts)]) if parts[0] == "sessions" and len(parts) <= 2 else ""
    return SESSION_EVENTS.get((method.upper(), template))


def route_template(request: HTTPConnection) -> str:
    """The route's template (/api/ai-echo/{path:path}), never the path itself: it could carry an id."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class GatewayAudit:
    def __init__(self, sink: str, keep_days: int, success_interval: float, clock: Callable[[], float] = time.time):
        self.log = AuditLog(sink, keep_days, FIELDS, {"component": "gateway"}, clock)
        self._success_interval = success_interval
        self._clock = clock
        self._last_success: dict[str, float] = {}  # token hash -> when its success was last recorded
        self._lock = threading.Lock()

    def close(self) -> None:
        self.log.close()

    def _request(self, request: HTTPConnection) -> dict[str, str | None]:
        """Who asked (address), how (the method, WEBSOCKET for a socket) and which route (its template)."""
        return {"client": request.client.host if request.client else None,
                "method": request.scope.get("method") or request.scope["type"].upper(), "route": route_template(request)}

    def auth_failure(self, request: HTTPConnection, reason: str) -> None:
        self.log.record("auth", "failure", reason=reason, **self._request(request))

    def auth_success(self, request: HTTPConnection, person: Person, token_sha256: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last_success.get(token_sha256)
            if last is not None and now - last < self._success_interval:
                return
            self._last_success[token_sha256] = now
            # Tokens rotate: forget the ones not seen for an interval, so the map stays small.
            self._last_success = {key: when for key, when in self._last_success.items()
                                  if now - when < self._success_interval}
        self.log.record("auth", "success", namespace=person.namespace, personalai=person.name,
                        **self._request(request))

    def userid_mismatch(self, request: HTTPConnection, person: Person) -> None:
        self.log.record("authz", "failure", reason="userid_mismatch", namespace=person.namespace,
                        personalai=person.name, **self._request(request))

    def training_start(self, request: HTTPConnection, person: Person, config: dict[str, int | float | bool | str],
                       outcome: str = "success", reason: str | None = None) -> None:
        """`config`: the validated brief knobs (numbers, booleans, "auto"), never free text."""
        self.log.record("training.start", outcome, namespace=person.namespace, personalai=person.name,
                        knobs=",".join(sorted(config)) or None, config=dict(sorted(config.items())) or None,
                        reason=reason, **self._request(request))

    def chat_session(self, request: Request, person: Person, path: str, status: int) -> None:
        found = chat_route(request.method, path)
        if found is None:
            return
        event, template = found
        self.log.record(event, "success" if status < 400 else "failure", namespace=person.namespace,
                        personalai=person.name, client=request.client.host if request.client else None,
                        method=request.method, route=template, status=status)
