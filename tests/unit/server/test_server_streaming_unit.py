"""The one streaming helper and the one limits path, under the real Starlette response machinery:
a stream slot held from before the first byte to after the last however the response ends, the
protocol's error frame, and the max-tokens cap refused the same way for every protocol."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from personalai_server.auth import Principal
from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine
from personalai_server.errors import APIError
from personalai_server.metrics import ServerMetrics
from personalai_server.routes.openai import CompletionRequest, completion_params
from personalai_server.routes.tgi import TGIParameters, tgi_params
from personalai_server.schemas import SessionSettings
from personalai_server.service import ChatService
from personalai_server.sse import DONE, parse_events
from personalai_server.storage import SessionStore
from personalai_server.streaming import event_stream

pytestmark = pytest.mark.unit

OWNER = Principal("owner-1")


def make_service(tmp_path, **limits) -> ChatService:
    config = parse_config({"persona": {"displayName": "Luke", "personalAI": "luke"},
                           "engine": {"baseModel": "/models/tiny"},
                           "conversation": {"maxTokens": 32}, "limits": {"maxTokens": 64, **limits}})
    return ChatService(config, SessionStore(tmp_path / "data"), LocalEngine(config), ServerMetrics())


class Frames:
    """Frames a route would send, remembering whether they were closed (the engine stopped)."""

    def __init__(self, *frames, fail: APIError | None = None):
        self.frames, self.fail, self.closed = frames, fail, False

    async def __call__(self, _held):
        try:
            for frame in self.frames:
                yield frame
            if self.fail:
                raise self.fail
        finally:
            self.closed = True


async def respond(response, disconnect_after: int | None = None) -> list[bytes]:
    """Drive the response as uvicorn does (ASGI 2.4); the client goes away after some body messages.
    Callers check the slot before their event loop ends (its end would close any generator left open)."""
    bodies: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.body":
            if disconnect_after is not None and len(bodies) >= disconnect_after:
                raise OSError("client went away")
            bodies.append(message.get("body", b""))

    async def receive():
        await asyncio.sleep(3600)

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST", "path": "/", "headers": []}
    with contextlib.suppress(Exception):
        await response(scope, receive, send)
    return bodies


def stream_of(service, frames, error_frame=APIError.body):
    return event_stream(service.stream_slot(OWNER), frames, error_frame)


def test_a_stream_holds_its_slot_until_the_last_byte_and_ends_with_the_marker(tmp_path):
    service = make_service(tmp_path)
    frames = Frames({"n": 1}, {"n": 2}, DONE)

    async def run():
        response = await stream_of(service, frames)
        held = service.stream_slots.active(OWNER.owner)
        body = b"".join(await respond(response))
        return held, (service.stream_slots.active(), frames.closed), body

    held, after, body = asyncio.run(run())
    assert held == 1 and after == (0, True)
    assert body.decode().endswith("data: [DONE]\n\n") and parse_events(body.decode()) == [{"n": 1}, {"n": 2}]


def test_an_error_mid_stream_is_the_protocols_error_frame_and_frees_the_slot(tmp_path):
    service = make_service(tmp_path)
    frames = Frames({"n": 1}, fail=APIError(502, "engine_error", "generation failed", None))

    async def run():
        response = await stream_of(service, frames, lambda e: {"error": e.message, "error_type": e.code})
        body = b"".join(await respond(response))
        return (service.stream_slots.active(), frames.closed), body

    after, body = asyncio.run(run())
    assert parse_events(body.decode()) == [{"n": 1}, {"error": "generation failed", "error_type": "engine_error"}]
    assert after == (0, True)


@pytest.mark.parametrize("sent", [0, 1])
def test_a_client_leaving_stops_the_frames_and_frees_the_slot(tmp_path, sent):
    service = make_service(tmp_path)
    frames = Frames(*({"n": n} for n in range(100)))

    async def run():
        bodies = await respond(await stream_of(service, frames), disconnect_after=sent)
        active = service.metrics.registry.get_sample_value("personalai_server_active_streams")
        return len(bodies), (service.stream_slots.active(), active, frames.closed)

    assert asyncio.run(run()) == (sent, (0, 0, True))


def test_a_refused_slot_is_a_plain_429_before_any_frame(tmp_path):
    service = make_service(tmp_path, concurrentStreams=1)
    frames = Frames({"n": 1})

    async def run():
        first = await stream_of(service, frames)
        with pytest.raises(APIError) as refused:
            await stream_of(service, Frames({"n": 2}))
        await respond(first)
        return refused.value, service.stream_slots.active()

    refused, active = asyncio.run(run())
    assert (refused.status, refused.code, refused.headers["Retry-After"]) == (429, "too_many_streams", "1")
    assert active == 0


@pytest.mark.parametrize("check, field", [
    (lambda service: service.check_settings(SessionSettings(max_tokens=65)), "settings.maxTokens"),
    (lambda service: completion_params(service, CompletionRequest(messages=[{"role": "user", "content": "hi"}],
                                                                  max_tokens=65)), "max_tokens"),
    (lambda service: completion_params(service, CompletionRequest(messages=[{"role": "user", "content": "hi"}],
                                                                  max_tokens=8, max_completion_tokens=65)),
     "max_completion_tokens"),
    (lambda service: tgi_params(service, TGIParameters(max_new_tokens=65)), "parameters.max_new_tokens"),
])
def test_the_max_tokens_cap_is_one_error_naming_each_protocols_field(tmp_path, check, field):
    with pytest.raises(APIError) as raised:
        check(make_service(tmp_path))
    assert raised.value.body() == {"error": {"code": "max_tokens_too_large", "message": f"{field} must be at most 64",
                                             "field": field}}
    assert raised.value.status == 422


def test_within_the_cap_a_request_gets_what_it_asked_and_config_values_are_cut(tmp_path):
    service = make_service(tmp_path)
    request = CompletionRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=64)
    assert completion_params(service, request).max_tokens == 64
    # Nothing sent: the conversation's maxTokens, as a session's turn gets it.
    assert completion_params(service, CompletionRequest(messages=[{"role": "user", "content": "hi"}])).max_tokens == 32
    assert tgi_params(service, TGIParameters(max_new_tokens=64)).max_tokens == 64
    # A session stored before limits.maxTokens was lowered is cut to the limit, not refused.
    assert service.cap_max_tokens(500, None) == 64
