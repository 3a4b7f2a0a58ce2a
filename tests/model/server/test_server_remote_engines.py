"""The tgi and vllm engines, each against a server that speaks that engine's protocol.

The backend is this project's own server with the local engine: its /generate_stream speaks TGI's
protocol (adapter chosen by parameters.adapter_id) and its /v1 routes vLLM's OpenAI API (adapters
loaded with /v1/load_lora_adapter, chosen by `model`). With greedy decoding the reply through the
front server must equal what the backend says directly with the same adapter: the adapter really
was selected per request, and the prompt arrived intact.
"""

from __future__ import annotations

import httpx
import pytest
from server_harness import TOKEN_A, auth, server_config, sse_events

from personalai_contracts.artifacts import manifest_digest

pytestmark = pytest.mark.model

QUESTION = "What matters most to you?"


@pytest.fixture
def backend(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path / "backend", tiny_model_dir, artifacts_dir)
    return start_server(config)


def front_config(tmp_path, tiny_model_dir, artifacts_dir, backend, kind: str) -> dict:
    token_file = tmp_path / "engine-token"
    token_file.write_text(TOKEN_A + "\n")
    return server_config(
        tmp_path / "front", tiny_model_dir, artifacts_dir,
        engine={"kind": kind, "url": backend.url, "tokenFile": str(token_file), "baseModel": str(tiny_model_dir)},
        adapter={"version": "v1-aaaa"},
    )


def greedy_session(client: httpx.Client) -> str:
    return client.post("/api/ai-echo/sessions", json={"settings": {"temperature": 0, "maxTokens": 10}}).json()["sessionId"]


def backend_reply(backend, messages, model: str) -> str:
    response = httpx.post(f"{backend.url}/v1/chat/completions", headers=auth(), timeout=30,
                          json={"model": model, "messages": messages, "temperature": 0, "max_tokens": 10})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_tgi_engine_selects_the_adapter_per_request(tmp_path, tiny_model_dir, artifacts_dir, backend, start_server):
    front = start_server(front_config(tmp_path, tiny_model_dir, artifacts_dir, backend, "tgi"))
    with httpx.Client(base_url=front.url, headers=auth(), timeout=30) as client:
        session_id = greedy_session(client)
        answer = client.post("/api/ai-echo/chat", json={"message": QUESTION, "sessionId": session_id})
        assert answer.status_code == 200, answer.text
        body = answer.json()
    assert body["metadata"]["engine"] == "tgi" and body["metadata"]["adapterVersion"] == "v1-aaaa"
    # The backend loaded the adapter TGI-style, on the first request that named it.
    assert "v1-aaaa" in backend.service.engine.loaded_adapters()
    messages = [
        {"role": "system", "content": front.config.conversation.personality_modes["wise"].system_prompt.format(displayName="Luke")},
        {"role": "user", "content": QUESTION},
    ]
    assert body["response"] == backend_reply(backend, messages, "v1-aaaa")
    assert body["response"] != backend_reply(backend, messages, str(tiny_model_dir))
    metrics = httpx.get(f"{backend.url}/metrics", headers=auth()).text
    assert 'route="/generate_stream",status="200"' in metrics


def test_vllm_engine_loads_lora_at_runtime(tmp_path, tiny_model_dir, artifacts_dir, backend, start_server):
    front = start_server(front_config(tmp_path, tiny_model_dir, artifacts_dir, backend, "vllm"))
    assert backend.service.engine.loaded_adapters() == ["v1-aaaa"]  # loaded by the front's start
    with httpx.Client(base_url=front.url, headers=auth(), timeout=30) as client:
        session_id = greedy_session(client)
        streamed = client.post("/api/ai-echo/stream", json={"message": QUESTION, "sessionId": session_id})
        assert streamed.status_code == 200
    event = sse_events(streamed.text)[-1]
    assert event["type"] == "complete", event
    assert event["metadata"]["engine"] == "vllm" and event["metadata"]["adapterVersion"] == "v1-aaaa"
    messages = [
        {"role": "system", "content": front.config.conversation.personality_modes["wise"].system_prompt.format(displayName="Luke")},
        {"role": "user", "content": QUESTION},
    ]
    assert event["response"] == backend_reply(backend, messages, "v1-aaaa")
    # vLLM was told a name that is Luke's and this adapter's alone, never the bare version another
    # person's server could also load; the reply under that name is the same adapter's.
    digest = manifest_digest(artifacts_dir / "v1-aaaa")
    assert backend.service.lora_names == {f"luke--v1-aaaa--{digest[:16]}": "v1-aaaa"}
    assert backend_reply(backend, messages, f"luke--v1-aaaa--{digest[:16]}") == event["response"]
    metrics = httpx.get(f"{backend.url}/metrics", headers=auth()).text
    assert 'route="/v1/load_lora_adapter",status="200"' in metrics
    assert 'route="/v1/chat/completions",status="200"' in metrics


def test_backend_refuses_adapters_outside_its_dir(backend, tmp_path):
    response = httpx.post(f"{backend.url}/v1/load_lora_adapter", headers=auth(), timeout=10,
                          json={"lora_name": "v1-aaaa", "lora_path": str(tmp_path)})
    assert response.status_code == 422 and response.json()["error"]["field"] == "lora_path"
    missing = httpx.post(f"{backend.url}/v1/load_lora_adapter", headers=auth(), timeout=10, json={"lora_name": "v9-none"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "lora_name"


def test_backend_names_adapters_as_vllm_does(backend, artifacts_dir):
    """A name is bound to one folder: loading another folder under it is refused, as vLLM refuses it."""
    def load(name: str, version: str) -> httpx.Response:
        return httpx.post(f"{backend.url}/v1/load_lora_adapter", headers=auth(), timeout=30,
                          json={"lora_name": name, "lora_path": str(artifacts_dir / version)})

    assert load("zoe--v1-aaaa--0123", "v1-aaaa").status_code == 200
    assert load("zoe--v1-aaaa--0123", "v1-aaaa").status_code == 200  # the same folder again: nothing changes
    taken = load("zoe--v1-aaaa--0123", "v2-bbbb")
    assert taken.status_code == 400 and taken.json()["error"]["field"] == "lora_name"
    models = httpx.get(f"{backend.url}/v1/models", headers=auth(), timeout=10).json()["data"]
    assert {"id": "zoe--v1-aaaa--0123", "root": "v1-aaaa"}.items() <= next(
        card for card in models if card["id"] == "zoe--v1-aaaa--0123").items()

