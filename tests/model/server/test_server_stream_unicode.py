"""Accents and emoji split across tokens stream whole through every streaming route.

The engine is the real local engine, tokenizer and decode path included; only the transformer is
replaced by a scripted one whose every forward pass makes the next token of a fixed reply the only
choice. The tiny tokenizer has no token for any non-ASCII character, so each one of the reply
arrives over two to four byte tokens, as a real model's rarer characters do.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from server_harness import TOKEN_A, auth, read_openai_stream, server_config, sse_events, websocket_chat

from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine

pytestmark = pytest.mark.model

REPLY = "Café naïve — 😀👍🏽 日本語"
LIMITS = {"conversation": {"maxTokens": 64}, "limits": {"maxTokens": 64}}


class ScriptedModel:
    """Stands in for the transformer: the logits put all weight on the next token of the script."""

    def __init__(self, vocab_size: int, script: list[int]):
        import torch

        self.vocab_size = vocab_size
        self.script = script
        self.position = 0
        # The engine reads the device off the model's parameters.
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.anchor])

    def __call__(self, input_ids, past_key_values=None, use_cache=True):
        import torch

        if input_ids.shape[1] > 1:  # a prompt, not one more token: a new generation starts the script over
            self.position = 0
        token = self.script[min(self.position, len(self.script) - 1)]
        self.position += 1
        logits = torch.full((1, input_ids.shape[1], self.vocab_size), -1e4)
        logits[0, -1, token] = 1e4
        return SimpleNamespace(logits=logits)


class ScriptedEngine(LocalEngine):
    """The local engine, saying REPLY (then its end-of-sequence token) to every prompt."""

    def _load_base(self) -> None:
        super()._load_base()
        hf_tokenizer = self.tokenizer.tokenizer
        self.reply_ids = hf_tokenizer.encode(REPLY, add_special_tokens=False)
        self.model = ScriptedModel(len(hf_tokenizer), [*self.reply_ids, hf_tokenizer.eos_token_id])


@pytest.fixture
def scripted_server(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path / "scripted", tiny_model_dir, artifacts_dir, **LIMITS)
    return start_server(config, engine=ScriptedEngine(parse_config(config)))


def assert_whole(pieces: list[str], expected: str = REPLY) -> None:
    assert pieces and all("\ufffd" not in piece for piece in pieces), pieces
    assert "".join(pieces) == expected


def test_the_reply_really_splits_characters_across_tokens(scripted_server):
    engine = scripted_server.service.engine
    alone = [engine.tokenizer.decode([token]) for token in engine.reply_ids]
    assert sum("\ufffd" in text for text in alone) >= 10
    assert engine.tokenizer.decode(engine.reply_ids) == REPLY


def test_sse_stream_sends_whole_characters(scripted_server):
    response = httpx.post(f"{scripted_server.url}/api/ai-echo/stream", headers=auth(), timeout=30,
                          json={"message": "Dis-moi quelque chose"})
    assert response.status_code == 200
    events = sse_events(response.content.decode("utf-8"))
    assert_whole([e["content"] for e in events if e["type"] == "chunk"])
    complete = events[-1]
    assert complete["type"] == "complete" and complete["response"] == REPLY
    # Tokens are still counted one by one, the end-of-sequence token not among them.
    assert complete["metadata"]["tokens"]["completion"] == len(scripted_server.service.engine.reply_ids)
    assert complete["metadata"]["finishReason"] == "eos_token"


def test_websocket_sends_whole_characters(scripted_server):
    events = websocket_chat(scripted_server.url, "Hola, ¿qué tal?")
    assert events[-1]["type"] == "complete" and events[-1]["response"] == REPLY
    assert_whole([e["content"] for e in events if e["type"] == "chunk"])


def test_openai_stream_sends_whole_characters(scripted_server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{scripted_server.url}/v1", api_key=TOKEN_A, timeout=30, max_retries=0)
    stream = client.chat.completions.create(model="luke", messages=[{"role": "user", "content": "Grüß dich"}],
                                            stream=True, max_tokens=64)
    read = read_openai_stream(stream)
    assert_whole(read.pieces)
    assert read.finish_reason == "stop"


def tgi_stream(url: str, max_new_tokens: int) -> list[dict]:
    response = httpx.post(f"{url}/generate_stream", headers=auth(), timeout=30,
                          json={"inputs": "[INST] Bonjour [/INST]", "parameters": {"max_new_tokens": max_new_tokens}})
    assert response.status_code == 200, response.text
    return sse_events(response.content.decode("utf-8"))


def test_tgi_generate_stream_sends_whole_characters(scripted_server):
    reply_ids = scripted_server.service.engine.reply_ids
    events = tgi_stream(scripted_server.url, 64)
    tokens = [e["token"] for e in events if not e["token"]["special"]]
    # One event per token, as TGI sends them: "" while a character is still incomplete.
    assert [token["id"] for token in tokens] == reply_ids
    assert any(token["text"] == "" for token in tokens)
    assert_whole([token["text"] for token in tokens])
    assert events[-1]["generated_text"] == REPLY and events[-1]["details"]["finish_reason"] == "eos_token"


def test_tgi_reply_cut_mid_character_ends_as_its_full_decode(scripted_server):
    engine = scripted_server.service.engine
    decode, ids = engine.tokenizer.decode, engine.reply_ids
    # max_new_tokens ends the reply on the second of the four bytes of "😀".
    cut = 1 + next(n for n in range(len(ids)) if decode(ids[:n]).endswith("— \ufffd"))
    full = decode(ids[:cut])
    events = tgi_stream(scripted_server.url, cut)
    texts = [e["token"]["text"] for e in events]
    assert len(events) == cut and events[-1]["details"] == {"finish_reason": "length", "generated_tokens": cut, "seed": None}
    # The held-back bytes come with the last token, as U+FFFD: the reply as generated, nothing lost.
    assert all("\ufffd" not in text for text in texts[:-1]) and texts[-1] == "\ufffd"
    assert "".join(texts) == events[-1]["generated_text"] == full


@pytest.mark.parametrize("kind", ["tgi", "vllm"])
def test_remote_engines_pass_whole_characters_on(kind, tmp_path, tiny_model_dir, artifacts_dir, scripted_server, start_server):
    token_file = tmp_path / "engine-token"
    token_file.write_text(TOKEN_A + "\n")
    config = server_config(
        tmp_path / "front", tiny_model_dir, artifacts_dir, **LIMITS,
        engine={"kind": kind, "url": scripted_server.url, "tokenFile": str(token_file), "baseModel": str(tiny_model_dir)},
    )
    front = start_server(config)
    response = httpx.post(f"{front.url}/api/ai-echo/stream", headers=auth(), timeout=30, json={"message": "Ciao"})
    assert response.status_code == 200
    events = sse_events(response.content.decode("utf-8"))
    assert events[-1]["type"] == "complete" and events[-1]["response"] == REPLY, events[-1]
    assert events[-1]["metadata"]["engine"] == kind
    assert_whole([e["content"] for e in events if e["type"] == "chunk"])
