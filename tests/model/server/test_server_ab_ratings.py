"""Issue 15 with the tiny model: one server (one engine) serves a current and a candidate LoRA adapter
to a 50/50 share of new sessions, sticky across turns; /stats and /metrics count each version; ratings
are stored, counted, replaced and removed over HTTP, and go with their session."""

from __future__ import annotations

import httpx
import pytest
from server_harness import auth, server_config

from personalai_contracts.artifacts import manifest_digest

pytestmark = pytest.mark.model

CURRENT, CANDIDATE = "v1-aaaa", "v2-bbbb"
SESSIONS = 40


@pytest.fixture
def server(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    return start_server(server_config(
        tmp_path, tiny_model_dir, artifacts_dir,
        adapter={"version": CURRENT},
        candidate={"version": CANDIDATE, "manifestSha256": manifest_digest(artifacts_dir / CANDIDATE), "share": 50},
        conversation={"maxTokens": 2},
    ))


def chat(client: httpx.Client, session_id: str | None = None) -> dict:
    body = {"message": "hello"} | ({"sessionId": session_id} if session_id else {})
    response = client.post("/api/ai-echo/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_split_is_sticky_and_counted_per_version(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        first = [chat(client) for _ in range(SESSIONS)]
        variants = {reply["sessionId"]: reply["metadata"]["variant"] for reply in first}
        assert set(variants.values()) == {"current", "candidate"}
        for reply in first:
            expected = CANDIDATE if reply["metadata"]["variant"] == "candidate" else CURRENT
            assert reply["metadata"]["adapterVersion"] == expected
        for session_id, variant in list(variants.items())[:6]:
            assert chat(client, session_id)["metadata"]["variant"] == variant
        assert set(server.service.engine.loaded_adapters()) >= {CURRENT, CANDIDATE}

        stats = client.get("/api/ai-echo/stats").json()
        candidates = sum(v == "candidate" for v in variants.values())
        assert stats["candidate"] == {"version": CANDIDATE, "share": 50}
        assert stats["versions"][CANDIDATE]["sessions"] == candidates
        assert stats["versions"][CURRENT]["sessions"] == SESSIONS - candidates
        replies = sum(stats["versions"][v]["replies"] for v in (CURRENT, CANDIDATE))
        assert replies == SESSIONS + 6
        assert all(stats["versions"][v]["latencyMsP95"] > 0 for v in (CURRENT, CANDIDATE))
        metrics = client.get("/metrics").text
        assert (f'personalai_server_sessions_assigned_total{{variant="candidate",version="{CANDIDATE}"}} '
                f'{float(candidates)}') in metrics
        assert f'personalai_server_replies_total{{outcome="ok",version="{CANDIDATE}"}}' in metrics


def test_ratings_over_http(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        reply = chat(client)
        session_id, message_id = reply["sessionId"], reply["messageId"]
        version = reply["metadata"]["adapterVersion"]
        path = f"/api/ai-echo/sessions/{session_id}/messages/{message_id}/rating"

        bad = client.post(path, json={"rating": "sideways"})
        assert bad.status_code == 422 and "rating" in bad.text
        assert client.post(path, json={"rating": "up", "note": "x" * 501}).status_code == 422
        assert client.post(f"/api/ai-echo/sessions/{session_id}/messages/{message_id - 1}/rating",
                           json={"rating": "up"}).status_code == 404  # the question, not a reply
        assert client.post(f"/api/ai-echo/sessions/nope/messages/{message_id}/rating",
                           json={"rating": "up"}).status_code == 404
        assert httpx.post(server.url + path, json={"rating": "up"}).status_code == 401

        rated = client.post(path, json={"rating": "up", "note": "felt like me"})
        assert rated.json() == {"sessionId": session_id, "messageId": message_id, "rating": "up",
                                "adapterVersion": version}
        client.post(path, json={"rating": "down"})
        counts = client.get("/api/ai-echo/stats").json()["versions"][version]
        assert (counts["ratingsUp"], counts["ratingsDown"]) == (0, 1)
        detail = client.get(f"/api/ai-echo/sessions/{session_id}").json()
        assert detail["messages"][1]["rating"] == "down" and detail["messages"][1]["messageId"] == message_id
        assert f'personalai_server_ratings_total{{rating="down",version="{version}"}} 1.0' in client.get("/metrics").text

        assert client.delete(path).status_code == 204
        assert client.get("/api/ai-echo/stats").json()["versions"][version]["ratingsDown"] == 0
        client.post(path, json={"rating": "up", "note": "note-canary-15"})
        assert client.delete(f"/api/ai-echo/sessions/{session_id}").status_code == 204
        assert client.post(path, json={"rating": "up"}).status_code == 404
        data = server.service.store.path.parent
        assert not any(b"note-canary-15" in f.read_bytes() for f in data.iterdir() if f.is_file())
        assert client.get("/api/ai-echo/stats").json()["versions"][version]["ratingsUp"] == 0
