"""The product brief's chat flows against a real server with the tiny model on the CPU."""

from __future__ import annotations

import time

import httpx
import pytest
from server_harness import TOKEN_A, auth, read_openai_stream, server_config, sse_events, websocket_chat

from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine

pytestmark = pytest.mark.model


class RecordingEngine(LocalEngine):
    """The real local engine, keeping the messages and stats of every generation it was asked for."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def stream(self, messages, params, stats):
        self.calls.append((messages, params, stats))
        return super().stream(messages, params, stats)


@pytest.fixture
def chat_server(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, adapter={"version": "v1-aaaa"})
    engine = RecordingEngine(parse_config(config))
    return start_server(config, engine=engine)


def test_session_stream_history_and_delete(chat_server):
    url, engine = chat_server.url, chat_server.service.engine
    with httpx.Client(base_url=url, headers=auth(), timeout=30) as client:
        created = client.post("/api/ai-echo/sessions", json={"title": "Evening talk", "settings": {"personalityMode": "nostalgic", "temperature": 0.5}})
        assert created.status_code == 201, created.text
        session_id = created.json()["sessionId"]

        streamed = client.post("/api/ai-echo/stream", json={"message": "Tell me about the lake", "sessionId": session_id})
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = sse_events(streamed.text)
        chunks = [e["content"] for e in events if e["type"] == "chunk"]
        complete = events[-1]
        assert complete["type"] == "complete" and chunks
        assert complete["response"] == "".join(chunks)
        metadata = complete["metadata"]
        assert metadata["adapterVersion"] == "v1-aaaa"
        assert metadata["personalityMode"] == "nostalgic"
        assert metadata["tokens"]["completion"] >= 1 and metadata["tokens"]["prompt"] > 10
        assert metadata["timing"]["timeToFirstTokenMs"] > 0

        # The mode's system prompt, with the display name filled in, leads the prompt; the user's text is a user message.
        first_messages = engine.calls[-1][0]
        assert first_messages[0]["role"] == "system" and "Luke" in first_messages[0]["content"]
        assert "lake" not in first_messages[0]["content"]
        assert first_messages[-1] == {"role": "user", "content": "Tell me about the lake"}

        questions = ["Tell me about the lake", "Who came with you?", "What did you catch?", "Would you go back?"]
        replies = [complete["response"]]
        for question in questions[1:]:
            answer = client.post("/api/ai-echo/chat", json={"message": question, "sessionId": session_id})
            assert answer.status_code == 200, answer.text
            replies.append(answer.json()["response"])

        # historyWindow is 4: the last prompt holds the two exchanges before it, not the first one.
        last_messages = engine.calls[-1][0]
        expected_history = [
            {"role": "user", "content": questions[1]}, {"role": "assistant", "content": replies[1]},
            {"role": "user", "content": questions[2]}, {"role": "assistant", "content": replies[2]},
        ]
        assert last_messages[1:-1] == expected_history
        assert last_messages[-1] == {"role": "user", "content": questions[3]}
        assert all(m["content"] != questions[0] for m in last_messages)

        detail = client.get(f"/api/ai-echo/sessions/{session_id}").json()
        assert detail["messageCount"] == 8
        assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == questions
        listed = client.get("/api/ai-echo/sessions").json()["sessions"]
        assert [s["sessionId"] for s in listed] == [session_id]

        renamed = client.put(f"/api/ai-echo/sessions/{session_id}", json={"title": "Lake memories"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Lake memories"
        assert renamed.json()["settings"]["personalityMode"] == "nostalgic"

        assert client.delete(f"/api/ai-echo/sessions/{session_id}").status_code == 204
        gone = client.get(f"/api/ai-echo/sessions/{session_id}")
        assert gone.status_code == 404 and gone.json()["error"]["field"] == "sessionId"


def test_openai_client_streams_and_completes(chat_server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{chat_server.url}/v1", api_key=TOKEN_A, timeout=30, max_retries=0)
    models = [m.id for m in client.models.list().data]
    assert "luke" in models and "v1-aaaa" in models

    stream = client.chat.completions.create(
        model="luke", messages=[{"role": "user", "content": "Hello, how are you?"}], stream=True, max_tokens=8,
        stream_options={"include_usage": True},
    )
    read = read_openai_stream(stream)
    assert read.pieces and read.finish_reason in ("stop", "length")
    assert read.usage.completion_tokens >= 1

    completion = client.chat.completions.create(
        model="v1-aaaa", messages=[{"role": "user", "content": "Hello again"}], max_tokens=6, temperature=0
    )
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens <= 6
    engine_messages = chat_server.service.engine.calls[-1][0]
    assert engine_messages[0]["role"] == "system" and engine_messages[-1]["content"] == "Hello again"


def test_websocket_streams_a_reply(chat_server):
    events = websocket_chat(chat_server.url, "Hi there")
    assert events[0]["type"] == "session" and events[-1]["type"] == "complete"
    assert events[-1]["response"] == "".join(e["content"] for e in events if e["type"] == "chunk")


def test_client_leaving_mid_stream_stops_generation(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir,
                           conversation={"maxTokens": 1024}, limits={"maxTokens": 1024, "concurrentStreams": 1})
    engine = RecordingEngine(parse_config(config))
    server = start_server(config, engine=engine)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        session_id = client.post("/api/ai-echo/sessions", json={}).json()["sessionId"]
        with client.stream("POST", "/api/ai-echo/stream", json={"message": "Talk for a long time", "sessionId": session_id}) as response:
            lines = response.iter_lines()
            while '"chunk"' not in next(lines):
                pass
            # A second stream for the same token is refused while this one runs (concurrentStreams 1).
            refused = client.post("/api/ai-echo/stream", json={"message": "and me?", "sessionId": session_id})
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        stats = engine.calls[-1][2]
        deadline = time.monotonic() + 5
        while stats.finish_reason is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats.finish_reason == "stopped"
        assert stats.completion_tokens < 1024
        # Nothing half-said is stored, and the slot is free again.
        assert client.get(f"/api/ai-echo/sessions/{session_id}").json()["messageCount"] == 0
        assert client.post("/api/ai-echo/chat", json={"message": "still there?", "sessionId": session_id}).status_code == 200
        metrics = client.get("/metrics").text
        assert "personalai_server_cancelled_generations_total 1.0" in metrics
        assert "personalai_server_active_streams 0.0" in metrics
