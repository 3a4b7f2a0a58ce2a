"""Issue 14: the real server writes an audit stream of identifiers (auth over HTTP and WebSocket,
session create and delete, adapter load at start and on a reload) and no word of what was said."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid

import httpx
import pytest
import websockets
import yaml
from server_harness import TOKEN_A, auth, server_config, websocket_chat

from personalai_contracts.artifacts import manifest_digest
from personalai_server.auth import hash_token

pytestmark = pytest.mark.model


def audit_records(sink, **match) -> list[dict]:
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    return [record for record in records if all(record.get(key) == value for key, value in match.items())]


def refused_websocket(base_url: str, token: str) -> tuple[dict, int]:
    """The error event and close code of a WebSocket that authenticates with `token`."""

    async def talk() -> tuple[dict, int]:
        async with websockets.connect(base_url.replace("http://", "ws://") + "/api/ai-echo/ws", open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return event, ws.close_code

    return asyncio.run(talk())


def test_the_audit_stream_records_who_did_what_and_nothing_that_was_said(
        tmp_path, tiny_model_dir, artifacts_dir, start_server):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, artifacts)
    v1_digest, v2_digest = manifest_digest(artifacts / "v1-aaaa"), manifest_digest(artifacts / "v2-bbbb")
    sink = tmp_path / "data" / "audit.jsonl"
    config = server_config(tmp_path, tiny_model_dir, artifacts, audit={"sink": str(sink)},
                           adapter={"version": "v1-aaaa", "dir": str(artifacts), "manifestSha256": v1_digest})
    config_path = tmp_path / "server.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server = start_server(config, config_path=config_path)
    owner = hash_token(TOKEN_A)[:8]
    canary = f"canary-{uuid.uuid4().hex}"

    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/api/ai-echo/sessions").status_code == 401
        assert client.get("/api/ai-echo/sessions", headers=auth("not-a-token-of-this-server")).status_code == 401
        created = client.post("/api/ai-echo/sessions", headers=auth(), json={"title": f"About {canary}"})
        assert created.status_code == 201
        session_id = created.json()["sessionId"]
        said = client.post("/api/ai-echo/chat", headers=auth(),
                           json={"message": f"my secret is {canary}", "sessionId": session_id})
        assert said.status_code == 200
        assert client.delete(f"/api/ai-echo/sessions/{session_id}", headers=auth()).status_code == 204
    event, code = refused_websocket(server.url, "not-a-token-of-this-server")
    assert (event["error"]["code"], code) == ("unauthorized", 4401)
    events = websocket_chat(server.url, f"over the socket: {canary}")
    socket_session = events[-1]["sessionId"]
    assert events[-1]["type"] == "complete"

    # Hot reload to v2: its load is audited with the digest of what was loaded.
    config["adapter"] = {**config["adapter"], "version": "v2-bbbb", "manifestSha256": v2_digest}
    config_path.write_text(yaml.safe_dump(config))
    deadline = time.monotonic() + 30
    while not audit_records(sink, event="adapter.load", trigger="reload") and time.monotonic() < deadline:
        time.sleep(0.1)

    common = {"personalai": "luke"}
    assert audit_records(sink, event="adapter.load", outcome="success", trigger="start", adapterVersion="v1-aaaa",
                         manifestSha256=v1_digest, **common)
    assert audit_records(sink, event="adapter.load", outcome="success", trigger="reload", adapterVersion="v2-bbbb",
                         manifestSha256=v2_digest, **common)
    failures = audit_records(sink, event="auth", outcome="failure", transport="http", client="127.0.0.1", **common)
    assert {(record["reason"], record["path"]) for record in failures} == {
        ("no_token", "/api/ai-echo/sessions"), ("unknown_token", "/api/ai-echo/sessions")}
    assert all("owner" not in record for record in failures)
    assert len(audit_records(sink, event="auth", outcome="success", transport="http", owner=owner)) == 3
    assert audit_records(sink, event="auth", outcome="failure", transport="websocket", reason="unknown_token",
                         path="/api/ai-echo/ws")
    assert audit_records(sink, event="auth", outcome="success", transport="websocket", owner=owner)
    for session in (session_id, socket_session):
        assert audit_records(sink, event="session.create", outcome="success", owner=owner, session=session, **common)
    assert audit_records(sink, event="session.delete", outcome="success", owner=owner, session=session_id, **common)
    for record in audit_records(sink):
        assert set(record) >= {"time", "event", "personalai", "outcome"}
    text = sink.read_text()
    assert canary not in text and TOKEN_A not in text and hash_token(TOKEN_A) not in text
