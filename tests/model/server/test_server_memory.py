"""Memory end to end: adapters whose folders hold a memory index (real all-MiniLM-L6-v2 embeddings,
covered by the manifest), served by the real app with the tiny model. A question close to what the
person wrote gets that reflection's id in the reply metadata; one about something never written gets
no ids and a prompt that says so, with none of the person's names; a session can switch memory off;
a hot reload to another adapter version switches to that version's memories."""

from __future__ import annotations

import json
import logging
import shutil

import httpx
import pytest
import yaml
from server_harness import auth, server_config, sse_events, wait_ready, websocket_chat

from personalai_contracts import Reflection, memory
from personalai_contracts.artifacts import write_manifest
from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine

pytestmark = pytest.mark.model

V1_REFLECTIONS = [
    Reflection(question="What is your earliest memory?", category="Childhood",
               answer="Fishing with my father Aldo on Lake Orta, in his green rowing boat, the summer I turned six."),
    Reflection(question="How did you meet your wife?", category="Love",
               answer="At a dance hall in Novara in 1968. Marta wore a yellow dress and laughed at my shoes."),
    Reflection(question="What was your first job?", category="Career",
               answer="Sweeping the floor of the Bertolini bakery at five every morning, for two lire an hour."),
]
V2_REFLECTIONS = [
    Reflection(question="What is your favourite food?", category="Taste",
               answer="Saffron risotto the way my aunt Ginevra cooked it in Vercelli on Sundays."),
]
NAMES = ("Aldo", "Orta", "Novara", "Marta", "Bertolini", "Ginevra", "Vercelli")
UNWRITTEN = "Can you explain how a blockchain consensus algorithm works?"


class RecordingEngine(LocalEngine):
    """The real local engine, keeping the messages of every generation it was asked for."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def stream(self, messages, params, stats):
        self.calls.append(messages)
        return super().stream(messages, params, stats)


@pytest.fixture(scope="module")
def embedder():
    from personalai_contracts.memory import load_embedder

    return load_embedder()


def add_memory(adapter_dir, reflections, embedder) -> dict[str, str]:
    """Write the index as the trainer does, re-hash the manifest; returns {question: id}."""
    items = memory.build_items(reflections)
    vectors = embedder.encode([memory.memory_text(item) for item in items], normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
    memory.write_index(adapter_dir, items, vectors.tolist())
    manifest = json.loads((adapter_dir / "manifest.json").read_text())
    write_manifest(adapter_dir, adapter_version=manifest["adapterVersion"], base_model=manifest["baseModel"],
                   data_version=manifest["dataVersion"], config=manifest["config"], metrics=manifest["metrics"])
    assert {"memory.json", "memory.f32"} <= set(json.loads((adapter_dir / "manifest.json").read_text())["files"])
    return {item.question: item.id for item in items}


@pytest.fixture(scope="module")
def memory_artifacts(tmp_path_factory, artifacts_dir, embedder):
    artifacts = tmp_path_factory.mktemp("memory-artifacts")
    shutil.copytree(artifacts_dir, artifacts, dirs_exist_ok=True)
    ids = {"v1-aaaa": add_memory(artifacts / "v1-aaaa", V1_REFLECTIONS, embedder),
           "v2-bbbb": add_memory(artifacts / "v2-bbbb", V2_REFLECTIONS, embedder)}
    return artifacts, ids


def memory_server(tmp_path, tiny_model_dir, artifacts, start_server, version="v1-aaaa"):
    config = server_config(tmp_path, tiny_model_dir, artifacts, adapter={"version": version, "dir": str(artifacts)})
    config_path = tmp_path / "server.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server = start_server(config, config_path=config_path, engine=RecordingEngine(parse_config(config)))
    return server, config, config_path


def system_prompt(server) -> str:
    messages = server.service.engine.calls[-1]
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


def test_replies_name_the_memories_they_were_grounded_on(tmp_path, tiny_model_dir, memory_artifacts, start_server,
                                                         caplog):
    caplog.set_level(logging.DEBUG)
    artifacts, ids = memory_artifacts
    lake, wife = ids["v1-aaaa"]["What is your earliest memory?"], ids["v1-aaaa"]["How did you meet your wife?"]
    server, _, _ = memory_server(tmp_path, tiny_model_dir, artifacts, start_server)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        reply = client.post("/api/ai-echo/chat", json={"message": "Do you remember fishing with your father on the lake?"})
        assert reply.status_code == 200, reply.text
        metadata = reply.json()["metadata"]
        assert metadata["memories"][0] == lake and metadata["adapterVersion"] == "v1-aaaa"
        prompt = system_prompt(server)
        assert memory.MEMORY_HEADER in prompt and "Lake Orta" in prompt and memory.NO_MEMORY_NOTE not in prompt

        streamed = client.post("/api/ai-echo/stream", json={"message": "Tell me how you met your wife at the dance."})
        complete = sse_events(streamed.text)[-1]
        assert complete["type"] == "complete" and complete["metadata"]["memories"][0] == wife
        session_id = complete["sessionId"]
        # Stored with the reply: ids only, never the memories' text.
        stored = client.get(f"/api/ai-echo/sessions/{session_id}").json()["messages"][1]["metadata"]
        assert stored["memories"] == complete["metadata"]["memories"]
        assert not any(name in json.dumps(stored) for name in NAMES)

        # A follow-up is retrieved together with the question before it.
        follow_up = client.post("/api/ai-echo/chat", json={"message": "And what did she wear?", "sessionId": session_id})
        assert wife in follow_up.json()["metadata"]["memories"]

        openai = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "What was your very first job, sweeping floors?"}], "max_tokens": 4})
        assert openai.status_code == 200 and "Bertolini" in system_prompt(server)
    assert not any(name in caplog.text for name in NAMES)


def test_nothing_written_about_it_means_no_ids_and_no_names(tmp_path, tiny_model_dir, memory_artifacts, start_server):
    artifacts, _ = memory_artifacts
    server, _, _ = memory_server(tmp_path, tiny_model_dir, artifacts, start_server)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        for route in ("/api/ai-echo/chat", "/api/ai-echo/stream"):
            response = client.post(route, json={"message": UNWRITTEN})
            body = response.json() if route.endswith("chat") else sse_events(response.text)[-1]
            assert body["metadata"]["memories"] == []
            prompt = system_prompt(server)
            assert prompt.endswith(memory.NO_MEMORY_NOTE) and memory.MEMORY_HEADER not in prompt
            assert not any(name in prompt for name in NAMES)


def test_a_session_with_memory_off_gets_none(tmp_path, tiny_model_dir, memory_artifacts, start_server):
    artifacts, _ = memory_artifacts
    server, _, _ = memory_server(tmp_path, tiny_model_dir, artifacts, start_server)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        created = client.post("/api/ai-echo/sessions", json={"title": "Without memory", "settings": {"memory": False}})
        assert created.status_code == 201 and created.json()["settings"]["memory"] is False
        session_id = created.json()["sessionId"]
        reply = client.post("/api/ai-echo/chat", json={"message": "Do you remember fishing with your father on the lake?",
                                                        "sessionId": session_id})
        assert reply.json()["metadata"]["memories"] == []
        prompt = system_prompt(server)
        assert memory.MEMORY_HEADER not in prompt and memory.NO_MEMORY_NOTE not in prompt and "Aldo" not in prompt


def test_websocket_reply_names_its_memories(tmp_path, tiny_model_dir, memory_artifacts, start_server):
    artifacts, ids = memory_artifacts
    server, _, _ = memory_server(tmp_path, tiny_model_dir, artifacts, start_server)
    complete = websocket_chat(server.url, "What was your first job at the bakery?", timeout=60)[-1]
    assert complete["metadata"]["memories"][0] == ids["v1-aaaa"]["What was your first job?"]


def test_hot_reload_to_a_new_version_switches_memories(tmp_path, tiny_model_dir, memory_artifacts, start_server):
    artifacts, ids = memory_artifacts
    server, config, config_path = memory_server(tmp_path, tiny_model_dir, artifacts, start_server)
    question = "What food did you love most? Was it risotto?"
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        before = client.post("/api/ai-echo/chat", json={"message": question}).json()["metadata"]
        assert before["adapterVersion"] == "v1-aaaa" and ids["v2-bbbb"][V2_REFLECTIONS[0].question] not in before["memories"]

        config["adapter"]["version"] = "v2-bbbb"
        temporary = config_path.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(config))
        temporary.replace(config_path)
        wait_ready(server.url, timeout=30, adapter="v2-bbbb")

        after = client.post("/api/ai-echo/chat", json={"message": question}).json()["metadata"]
        assert after["adapterVersion"] == "v2-bbbb"
        assert after["memories"] == [ids["v2-bbbb"][V2_REFLECTIONS[0].question]]
        assert "Ginevra" in system_prompt(server) and "Aldo" not in system_prompt(server)
        assert set(server.service.memories.indexes) == {"v1-aaaa", "v2-bbbb"}  # both adapters are held
