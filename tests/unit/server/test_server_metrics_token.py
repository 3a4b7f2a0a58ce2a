"""auth.metricsTokensDir (issue 15): a scraper's token reads GET /metrics and is refused everywhere else
exactly as an unknown token is; the person's token still reads /metrics. The real app, token folders on
disk, and a vLLM engine that is never started (no route here gets as far as generating)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from personalai_server.app import build_app
from personalai_server.auth import TokenStore
from personalai_server.config import parse_config

pytestmark = pytest.mark.unit

PERSON = "person-token-0123456789abcdef"
SCRAPER = "scraper-token-0123456789abcdef"
UNKNOWN = "unknown-token-0123456789abcdef"


def app_with(tmp_path, metrics_dir: bool = True):
    for folder, token in (("auth", PERSON), ("metrics-auth", SCRAPER)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "token").write_text(token + "\n")
    auth = {"tokensDir": str(tmp_path / "auth")}
    if metrics_dir:
        auth["metricsTokensDir"] = str(tmp_path / "metrics-auth")
    config = parse_config({"persona": {"displayName": "Luke", "personalAI": "luke"},
                           "engine": {"kind": "vllm", "url": "http://127.0.0.1:9", "baseModel": "/models/tiny"},
                           "storage": {"dataDir": str(tmp_path / "data")},
                           "adapter": {"dir": str(tmp_path / "artifacts")}, "auth": auth})
    return build_app(config)


@pytest.fixture
def client(tmp_path) -> TestClient:
    return TestClient(app_with(tmp_path))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_scrapers_token_and_the_persons_read_metrics_an_unknown_one_does_not(client):
    for token in (SCRAPER, PERSON):
        response = client.get("/metrics", headers=bearer(token))
        assert response.status_code == 200, token
        assert "personalai_server_model_ready" in response.text
    assert client.get("/metrics", headers=bearer(UNKNOWN)).status_code == 401
    assert client.get("/metrics").status_code == 401


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/ai-echo/chat"), ("POST", "/api/ai-echo/sessions"), ("GET", "/api/ai-echo/stats"),
    ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/openapi.json"), ("POST", "/admin/forget"),
])
def test_the_scrapers_token_gets_the_401_of_an_unknown_token_everywhere_else(client, method, path):
    body = {"message": "hello"} if method == "POST" else None
    scraper = client.request(method, path, headers=bearer(SCRAPER), json=body)
    unknown = client.request(method, path, headers=bearer(UNKNOWN), json=body)
    assert scraper.status_code == unknown.status_code == 401
    assert scraper.json() == unknown.json()
    assert scraper.headers["www-authenticate"] == "Bearer"


def test_the_scrapers_token_sees_readiness_as_anyone_does(client):
    assert client.get("/readyz", headers=bearer(SCRAPER)).json() == client.get("/readyz").json()
    assert "engine" in client.get("/readyz", headers=bearer(PERSON)).json()


def test_the_scrapers_token_is_refused_by_the_websocket_in_its_auth_frame_and_header(client):
    for token in (SCRAPER, UNKNOWN):
        with client.websocket_connect("/api/ai-echo/ws") as socket:
            socket.send_json({"type": "auth", "token": token})
            event = socket.receive_json()
            assert event["error"]["code"] == "unauthorized", token
            with pytest.raises(WebSocketDisconnect):
                socket.receive_json()
        with client.websocket_connect("/api/ai-echo/ws", headers=bearer(token)) as socket:
            assert socket.receive_json()["error"]["code"] == "unauthorized", token
    with client.websocket_connect("/api/ai-echo/ws", headers=bearer(PERSON)) as socket:
        assert socket.receive_json() == {"type": "ready"}


def test_without_a_metrics_folder_only_the_persons_token_reads_metrics(tmp_path):
    client = TestClient(app_with(tmp_path, metrics_dir=False))
    assert client.get("/metrics", headers=bearer(SCRAPER)).status_code == 401
    assert client.get("/metrics", headers=bearer(PERSON)).status_code == 200


def test_a_metrics_folder_that_is_not_there_is_named_by_its_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="auth.metricsTokensDir"):
        TokenStore.from_dir(tmp_path / "absent", "auth.metricsTokensDir")


def test_a_rotated_scraper_token_is_read_without_a_restart(tmp_path):
    client = TestClient(app_with(tmp_path))
    rotated = "rotated-scraper-token-0123456789"
    (tmp_path / "metrics-auth" / "token").write_text(rotated + "\n")
    assert client.get("/metrics", headers=bearer(rotated)).status_code == 200
    assert client.get("/metrics", headers=bearer(SCRAPER)).status_code == 401
