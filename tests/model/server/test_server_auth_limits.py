"""Auth, ownership, every limit and bad input: the right status, a JSON error naming the field,
and nothing stored is lost."""

from __future__ import annotations

import httpx
import pytest
from server_harness import TOKEN_A, TOKEN_B, auth, server_config

pytestmark = pytest.mark.model


@pytest.fixture
def server(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir,
                           limits={"maxMessageChars": 200, "maxRequestBytes": 4096, "maxTokens": 64, "requestsPerMinute": 1000})
    return start_server(config)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_tokens_and_ownership(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert error_of(client.get("/api/ai-echo/sessions"), 401)["field"] == "Authorization"
        assert error_of(client.get("/api/ai-echo/sessions", headers=auth("not-a-token-at-all-123")), 401)["code"] == "unauthorized"
        assert error_of(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}), 401)
        # The probes and the page need no token (and the probes say only a status word); metrics and
        # the API document do, and there is no /docs page.
        for path in ("/healthz", "/readyz", "/"):
            assert client.get(path).status_code == 200, path
        assert client.get("/readyz").json() == {"status": "ready"} and client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz", headers=auth(TOKEN_A)).json()["engine"] == "local"
        for path in ("/metrics", "/openapi.json"):
            assert error_of(client.get(path), 401)["field"] == "Authorization", path
            assert client.get(path, headers=auth(TOKEN_A)).status_code == 200, path
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404

        session_id = client.post("/api/ai-echo/sessions", headers=auth(TOKEN_A), json={"title": "A's"}).json()["sessionId"]
        client.post("/api/ai-echo/chat", headers=auth(TOKEN_A), json={"message": "private words", "sessionId": session_id})
        # Token B cannot see, change, use or delete A's session: it does not exist for B.
        assert error_of(client.get(f"/api/ai-echo/sessions/{session_id}", headers=auth(TOKEN_B)), 404)["field"] == "sessionId"
        assert error_of(client.put(f"/api/ai-echo/sessions/{session_id}", headers=auth(TOKEN_B), json={"title": "mine"}), 404)
        assert error_of(client.delete(f"/api/ai-echo/sessions/{session_id}", headers=auth(TOKEN_B)), 404)
        assert error_of(client.post("/api/ai-echo/chat", headers=auth(TOKEN_B), json={"message": "hi", "sessionId": session_id}), 404)
        assert client.get("/api/ai-echo/sessions", headers=auth(TOKEN_B)).json()["sessions"] == []
        detail = client.get(f"/api/ai-echo/sessions/{session_id}", headers=auth(TOKEN_A)).json()
        assert detail["title"] == "A's" and detail["messageCount"] == 2


def test_bad_input_names_the_field_and_loses_nothing(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        session_id = client.post("/api/ai-echo/sessions", json={"title": "kept"}).json()["sessionId"]
        assert client.post("/api/ai-echo/chat", json={"message": "first", "sessionId": session_id}).status_code == 200

        malformed = client.post("/api/ai-echo/chat", content=b'{"message": "unterminated', headers={"content-type": "application/json"})
        assert error_of(malformed, 400) == {"code": "malformed_json", "message": "request body is not valid JSON", "field": "body"}
        assert error_of(client.post("/api/ai-echo/chat", json={"message": "hi", "sessionId": "nope"}), 404)["field"] == "sessionId"
        assert error_of(client.post("/api/ai-echo/chat", json={"sessionId": session_id}), 422)["field"] == "message"
        too_long = error_of(client.post("/api/ai-echo/chat", json={"message": "x" * 201, "sessionId": session_id}), 413)
        assert too_long["field"] == "message" and "maxMessageChars" in too_long["message"]
        assert "xxxx" not in too_long["message"]  # errors never echo what was sent
        assert error_of(client.post("/api/ai-echo/stream", json={"message": "x" * 201, "sessionId": session_id}), 413)["field"] == "message"
        huge = client.post("/api/ai-echo/chat", content=b'{"message": "' + b"y" * 5000 + b'"}', headers={"content-type": "application/json"})
        assert error_of(huge, 413)["field"] == "body"
        mode = error_of(client.post("/api/ai-echo/sessions", json={"settings": {"personalityMode": "grumpy"}}), 422)
        assert mode["field"] == "settings.personalityMode" and "wise" in mode["message"]
        assert error_of(client.put(f"/api/ai-echo/sessions/{session_id}", json={"settings": {"personalityMode": "grumpy"}}), 422)["field"] == "settings.personalityMode"
        assert error_of(client.put(f"/api/ai-echo/sessions/{session_id}", json={"settings": {"maxTokens": 65}}), 422)["field"] == "settings.maxTokens"
        assert error_of(client.post("/api/ai-echo/sessions", json={"settings": {"temperature": 9}}), 422)["field"] == "settings.temperature"
        assert error_of(client.post("/api/ai-echo/sessions", json={"colour": "red"}), 422)["field"] == "colour"
        assert error_of(client.post("/v1/chat/completions", json={"model": "someone-else", "messages": [{"role": "user", "content": "hi"}]}), 404)["field"] == "model"
        assert error_of(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}), 422)["field"] == "max_tokens"
        assert error_of(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "z" * 201}]}), 413)["field"] == "messages[0].content"

        detail = client.get(f"/api/ai-echo/sessions/{session_id}").json()
        assert detail["title"] == "kept" and detail["messageCount"] == 2 and detail["settings"]["personalityMode"] is None


def test_requests_per_minute(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, limits={"requestsPerMinute": 3})
    server = start_server(config)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/api/ai-echo/sessions", headers=auth(TOKEN_A)).status_code == 200
        refused = client.get("/api/ai-echo/sessions", headers=auth(TOKEN_A))
        assert error_of(refused, 429)["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # The limit is per token.
        assert client.get("/api/ai-echo/sessions", headers=auth(TOKEN_B)).status_code == 200
        assert 'personalai_server_rejected_requests_total{limit="requestsPerMinute"} 1.0' in client.get("/metrics", headers=auth(TOKEN_B)).text


def test_openapi_document_lists_the_api(server):
    document = httpx.get(f"{server.url}/openapi.json", headers=auth(), timeout=10).json()
    paths = document["paths"]
    for path, method in [
        ("/api/ai-echo/sessions", "post"), ("/api/ai-echo/sessions", "get"), ("/api/ai-echo/sessions/{sessionId}", "get"),
        ("/api/ai-echo/sessions/{sessionId}", "put"), ("/api/ai-echo/sessions/{sessionId}", "delete"),
        ("/api/ai-echo/chat", "post"), ("/api/ai-echo/stream", "post"), ("/v1/chat/completions", "post"),
        ("/v1/models", "get"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    chat = paths["/api/ai-echo/chat"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert chat["$ref"].endswith("/ChatResponse")
    assert "metadata" in document["components"]["schemas"]["ChatResponse"]["properties"]
    assert "text/event-stream" in paths["/api/ai-echo/stream"]["post"]["responses"]["200"]["content"]
