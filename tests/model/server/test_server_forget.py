"""POST /admin/forget: at erasure the chat server has the remote vLLM unload every adapter of its
PersonalAI, those it loaded and those an earlier process of it left there, and loads none again.

The vLLM stand-in is this project's own server with the local engine (its /v1 routes speak vLLM's
runtime LoRA API), as in test_server_remote_engines.py.
"""

from __future__ import annotations

import json
import urllib.request

import httpx
import pytest
from server_harness import TOKEN_A, auth, server_config

from personalai_contracts.artifacts import manifest_digest
from personalai_operator import erasure
from personalai_server.engines.vllm import remote_adapter_name

pytestmark = pytest.mark.model


@pytest.fixture
def backend(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    return start_server(server_config(tmp_path / "backend", tiny_model_dir, artifacts_dir))


def test_forget_unloads_every_name_of_the_person_and_refuses_without_the_token(
        tmp_path, tiny_model_dir, artifacts_dir, backend, start_server):
    token_file = tmp_path / "engine-token"
    token_file.write_text(TOKEN_A + "\n")
    audit_file = tmp_path / "front-audit.jsonl"
    front = start_server(server_config(
        tmp_path / "front", tiny_model_dir, artifacts_dir, adapter={"version": "v1-aaaa"}, audit={"sink": str(audit_file)},
        engine={"kind": "vllm", "url": backend.url, "tokenFile": str(token_file), "baseModel": str(tiny_model_dir)}))
    names = {version: remote_adapter_name("luke", version, manifest_digest(artifacts_dir / version))
             for version in ("v1-aaaa", "v2-bbbb")}
    # v2's name as an earlier process of Luke's server would have left it in vLLM.
    left = httpx.post(f"{backend.url}/v1/load_lora_adapter", headers=auth(), timeout=30,
                      json={"lora_name": names["v2-bbbb"], "lora_path": str(artifacts_dir / "v2-bbbb")})
    assert left.status_code == 200, left.text
    assert backend.service.lora_names == {names["v1-aaaa"]: "v1-aaaa", names["v2-bbbb"]: "v2-bbbb"}

    for headers in ({}, {"Authorization": "Bearer not-a-token-of-this-server"}):
        refused = httpx.post(f"{front.url}/admin/forget", headers=headers, timeout=10)
        assert refused.status_code == 401, refused.text
    assert len(backend.service.lora_names) == 2, "a refused call unloads nothing"

    # Asked as the operator's erasure asks it (its own request and reading of the answer).
    with urllib.request.urlopen(erasure.forget_request(front.url.removeprefix("http://"), TOKEN_A), timeout=30) as answer:
        assert erasure.forget_answer(answer.status, answer.read()) == erasure.RemoteUnload(2)
    assert backend.service.lora_names == {} and backend.service.engine.loaded_adapters() == []

    # Nothing is loaded again: a chat after erasure began is refused, and vLLM still holds nothing.
    with httpx.Client(base_url=front.url, headers=auth(), timeout=30) as client:
        session = client.post("/api/ai-echo/sessions", json={}).json()["sessionId"]
        chat = client.post("/api/ai-echo/chat", json={"message": "still there?", "sessionId": session})
    assert chat.status_code >= 400, chat.text
    assert backend.service.lora_names == {} and backend.service.engine.loaded_adapters() == []
    assert httpx.post(f"{front.url}/admin/forget", headers=auth(), timeout=30).json()["unloaded"] == 0

    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(r["outcome"], r.get("count")) for r in records if r["event"] == "adapters.forget"] == [
        ("success", 2), ("success", 0)]
    assert "still there?" not in audit_file.read_text()


def test_forget_with_the_local_engine_has_nothing_remote_to_unload(tmp_path, tiny_model_dir, artifacts_dir, backend):
    answer = httpx.post(f"{backend.url}/admin/forget", headers=auth(), timeout=10)
    assert answer.status_code == 200 and answer.json() == {"engine": "local", "unloaded": 0}
