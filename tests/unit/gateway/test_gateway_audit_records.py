"""The gateway's audit records (personalai_gateway.audit): the fields each event holds, the success
interval on a clock the test moves, the session routes recognised, and nothing else accepted."""

from __future__ import annotations

import json
import os

import pytest
from starlette.requests import HTTPConnection, Request
from starlette.routing import Route

from personalai_gateway.audit import GatewayAudit, chat_route
from personalai_gateway.settings import GatewaySettings
from personalai_gateway.tokens import Person

pytestmark = pytest.mark.unit

ANN = Person("gw-ann", "ann")
TEMPLATE = "/api/ai-echo/{path:path}"


class Clock:
    def __init__(self, now: float = 1_764_590_400.0):  # 2025-12-01T12:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(method: str = "GET", path: str = "/api/ai-echo/sessions/s-1?q=secret", route: str = TEMPLATE) -> Request:
    raw, _, query = path.partition("?")
    return Request({"type": "http", "method": method, "path": raw, "query_string": query.encode(), "headers": [],
                    "client": ("10.0.0.7", 5555), "route": Route(route, endpoint=lambda r: None)})


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink(tmp_path):
    return tmp_path / "audit" / "gateway.jsonl"


@pytest.fixture
def audit(sink, clock) -> GatewayAudit:
    log = GatewayAudit(str(sink), keep_days=3, success_interval=300, clock=clock)
    yield log
    log.close()


def test_auth_failure_names_the_route_template_never_the_path_or_token(audit, sink):
    audit.auth_failure(request(), "unknown_token")
    [entry] = lines(sink)
    assert entry == {"time": "2025-12-01T12:00:00.000Z", "event": "auth", "component": "gateway",
                     "outcome": "failure", "reason": "unknown_token", "client": "10.0.0.7", "method": "GET",
                     "route": TEMPLATE}
    assert os.stat(sink).st_mode & 0o777 == 0o600


def test_auth_success_is_recorded_once_per_token_per_interval(audit, sink, clock):
    for _ in range(3):
        audit.auth_success(request(), ANN, "a" * 64)
    audit.auth_success(request(), ANN, "b" * 64)  # a rotated token of the same person is another token
    clock.now += 301
    audit.auth_success(request(), ANN, "a" * 64)
    entries = lines(sink)
    assert [(e["event"], e["outcome"], e["personalai"], e["namespace"]) for e in entries] == [
        ("auth", "success", "ann", "gw-ann")] * 3
    assert "a" * 8 not in sink.read_text() and "b" * 8 not in sink.read_text()


def test_userid_mismatch_and_training_start_hold_names_and_numbers(audit, sink):
    start = request("POST", "/api/training/start-personal-ai", "/api/training/start-personal-ai")
    audit.userid_mismatch(start, ANN)
    audit.training_start(start, ANN, {"learningRate": 0.0002, "epochs": 3, "enableFlashAttention2": True})
    audit.training_start(start, ANN, {}, "failure", "data_not_ready")
    mismatch, started, refused = lines(sink)
    assert mismatch["event"] == "authz" and mismatch["outcome"] == "failure" and mismatch["reason"] == "userid_mismatch"
    assert mismatch["personalai"] == "ann" and mismatch["route"] == "/api/training/start-personal-ai"
    assert started["knobs"] == "enableFlashAttention2,epochs,learningRate"
    assert started["config"] == {"enableFlashAttention2": True, "epochs": 3, "learningRate": 0.0002}
    assert refused["outcome"] == "failure" and refused["reason"] == "data_not_ready" and "knobs" not in refused


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "sessions", ("chat.session.create", "/api/ai-echo/sessions")),
    ("post", "/sessions/", ("chat.session.create", "/api/ai-echo/sessions")),
    ("DELETE", "sessions/3f2a", ("chat.session.delete", "/api/ai-echo/sessions/{sessionId}")),
    ("GET", "sessions", None), ("PUT", "sessions/3f2a", None), ("DELETE", "sessions/3f2a/x", None),
    ("POST", "chat", None), ("DELETE", "sessions", None),
])
def test_chat_routes_audited_are_session_create_and_delete(method, path, expected):
    assert chat_route(method, path) == expected


def test_chat_session_record_has_the_template_and_status_not_the_id(audit, sink):
    audit.chat_session(request("DELETE", "/api/ai-echo/sessions/s-secret-id"), ANN, "sessions/s-secret-id", 204)
    audit.chat_session(request("POST", "/api/ai-echo/chat"), ANN, "chat", 200)  # not a session event
    audit.chat_session(request("POST", "/api/ai-echo/sessions"), ANN, "sessions", 429)
    deleted, refused = lines(sink)
    assert deleted["event"] == "chat.session.delete" and deleted["status"] == 204 and deleted["outcome"] == "success"
    assert deleted["route"] == "/api/ai-echo/sessions/{sessionId}" and "s-secret-id" not in sink.read_text()
    assert refused["event"] == "chat.session.create" and refused["outcome"] == "failure"


def test_audit_refuses_fields_that_are_not_identifiers(audit):
    with pytest.raises(ValueError, match="message"):
        audit.log.record("auth", message="what was said")


def test_audit_settings_default_to_stderr_and_name_a_bad_variable():
    settings = GatewaySettings.from_env({})
    assert (settings.audit_sink, settings.audit_keep_days, settings.audit_success_interval_seconds) == (
        "stderr", 90, 300.0)
    with pytest.raises(ValueError, match="AUDIT_KEEP_DAYS"):
        GatewaySettings.from_env({"PERSONALAI_GATEWAY_AUDIT_KEEP_DAYS": "0"})


def test_a_websocket_is_recorded_with_the_method_websocket(audit, sink):
    socket = HTTPConnection({"type": "websocket", "path": "/api/ai-echo/ws", "headers": [], "client": ("10.0.0.8", 1),
                      "route": Route("/api/ai-echo/ws", endpoint=lambda r: None)})
    audit.auth_failure(socket, "no_token")
    [entry] = lines(sink)
    assert (entry["method"], entry["route"], entry["reason"]) == ("WEBSOCKET", "/api/ai-echo/ws", "no_token")
