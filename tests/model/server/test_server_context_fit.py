"""Prompt + reply fit the model's context on every route (issue 13).

Chat routes trim history keeping back min(max tokens, half the context) for the reply, so a maxTokens
above half the context used to reach the engine whole: a ~800-token prompt with 1,500 to generate on
the tiny model's 2,048-token context. Now the reply is cut to the room left (a configured number) or
refused with 422 naming the prompt (a number the request sent itself).
"""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from server_harness import ThreadServer, auth, server_config, sse_events, websocket_chat

from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine

pytestmark = pytest.mark.model

MAX_TOKENS = 1500  # above half the tiny model's context
LONG_MESSAGE = "tell me about the lake " * 90  # ~2,000 characters, several hundred tokens


class AskedEngine(LocalEngine):
    """The real local engine, keeping (prompt tokens, max tokens) of what it was asked; it decodes only
    two tokens of each reply, since what it was asked is the point, not 1,500 tokens on a shared CPU."""

    def __init__(self, config):
        super().__init__(config)
        self.asked: list[tuple[int, int]] = []

    def stream(self, messages, params, stats):
        self.asked.append((self.count_tokens(messages), params.max_tokens))
        return super().stream(messages, dataclasses.replace(params, max_tokens=min(params.max_tokens, 2)), stats)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, artifacts_dir):
    tmp_path = tmp_path_factory.mktemp("context-fit")
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, conversation={"maxTokens": MAX_TOKENS},
                           limits={"maxTokens": MAX_TOKENS, "requestsPerMinute": 1000, "concurrentStreams": 8})
    with ThreadServer(config, engine=AskedEngine(parse_config(config))) as running:
        yield running


def last_ask(server) -> tuple[int, int]:
    engine = server.service.engine
    prompt_tokens, max_tokens = engine.asked[-1]
    # The overflow this reproduces: the prompt with the configured reply would not have fit.
    assert prompt_tokens + MAX_TOKENS > engine.context_length, (prompt_tokens, engine.context_length)
    return prompt_tokens, max_tokens


def assert_cut_to_fit(server) -> None:
    prompt_tokens, max_tokens = last_ask(server)
    assert max_tokens == server.service.engine.context_length - prompt_tokens


def test_brief_chat_cuts_the_reply_to_the_room_left(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        answered = client.post("/api/ai-echo/chat", json={"message": LONG_MESSAGE})
        assert answered.status_code == 200, answered.text
        assert_cut_to_fit(server)


def test_brief_stream_cuts_the_reply_to_the_room_left(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        streamed = client.post("/api/ai-echo/stream", json={"message": LONG_MESSAGE})
        assert streamed.status_code == 200 and sse_events(streamed.text)[-1]["type"] == "complete", streamed.text
        assert_cut_to_fit(server)


def test_websocket_cuts_the_reply_to_the_room_left(server):
    events = websocket_chat(server.url, LONG_MESSAGE)
    assert events[-1]["type"] == "complete", events[-1]
    assert_cut_to_fit(server)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_cuts_a_configured_reply_to_the_room_left(server, stream):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        answered = client.post("/v1/chat/completions",
                               json={"messages": [{"role": "user", "content": LONG_MESSAGE}], "stream": stream})
        assert answered.status_code == 200, answered.text
        assert_cut_to_fit(server)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_openai_refuses_a_requested_reply_that_does_not_fit(server, field):
    asked_before = len(server.service.engine.asked)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        refused = client.post("/v1/chat/completions",
                              json={"messages": [{"role": "user", "content": LONG_MESSAGE}], field: MAX_TOKENS})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["field"] == "messages"
    assert "lake" not in refused.text  # the person's words are not echoed
    assert len(server.service.engine.asked) == asked_before  # refused before the engine was asked
