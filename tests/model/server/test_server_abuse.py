"""The chat server under abuse and failure (issue 13): every route through the same limits, sockets
that must authenticate in time, numeric bounds, generation deadline, disconnects, SIGTERM, and an
engine that failed to start recovering through its config."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import httpx
import pytest
import websockets
import yaml
from server_harness import TOKEN_A, TOKEN_B, ServerProcess, ThreadServer, auth, server_config, sse_events

from devcluster.waiting import wait_for
from personalai_server.config import parse_config
from personalai_server.engines.local import LocalEngine

pytestmark = pytest.mark.model

class SlowEngine(LocalEngine):
    """The real local engine, 20 ms a token, so a long reply surely outlasts the client's patience."""

    def _generate(self, prompt_ids, params, stop, emit, record_probability):
        def slowly(item):
            time.sleep(0.02)
            emit(item)

        return super()._generate(prompt_ids, params, stop, slowly, record_probability)


LONG = {"conversation": {"maxTokens": 1000}, "limits": {"maxTokens": 1000, "concurrentStreams": 1}}


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/api/ai-echo/ws"


def test_every_route_refuses_what_does_not_fit(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    server = start_server(server_config(tmp_path, tiny_model_dir, artifacts_dir))
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        # 60,000 characters is far past the tiny model's 2,048-token context: 422 naming `inputs`, not 200.
        for path in ("/generate", "/generate_stream"):
            refused = client.post(path, json={"inputs": "hello " * 10_000, "parameters": {"max_new_tokens": 8}})
            assert refused.status_code == 422, (path, refused.text)
            assert refused.json()["error"]["field"] == "inputs" and "hello" not in refused.text
        assert client.post("/generate", json={"inputs": "hello", "parameters": {"max_new_tokens": 4}}).status_code == 200
        # Numbers out of bounds are 422 naming the field, not an engine failure (a 2**70 seed was 502).
        hi = [{"role": "user", "content": "hi"}]
        for body, field in [({"messages": hi, "seed": 2**70}, "seed"), ({"messages": hi, "max_tokens": 2**40}, "max_tokens"),
                            ({"messages": hi, "temperature": 1e308}, "temperature"), ({"messages": hi, "n": 3}, "n")]:
            refused = client.post("/v1/chat/completions", json=body)
            assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
        tgi = client.post("/generate", json={"inputs": "hi", "parameters": {"seed": 2**70}})
        assert tgi.status_code == 422 and tgi.json()["error"]["field"] == "parameters.seed"
        assert client.post("/v1/chat/completions", json={"messages": hi, "seed": 2**62, "max_tokens": 3}).status_code == 200


def test_websockets_must_authenticate_in_time_within_caps(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    limits = {"websocketAuthSeconds": 0.5, "websocketsPerToken": 1, "maxWebsockets": 3}
    server = start_server(server_config(tmp_path, tiny_model_dir, artifacts_dir, limits=limits))
    url = ws_url(server)

    async def closed_code(socket) -> int:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(socket.recv(), 5)
        return socket.close_code

    async def scenario():
        started = time.monotonic()
        async with websockets.connect(url, open_timeout=10) as silent:
            assert await closed_code(silent) == 1008
        assert time.monotonic() - started < 3
        async with websockets.connect(url, open_timeout=10, max_size=None) as big:
            await big.send("x" * (1024 * 1024))  # a 1 MiB frame before auth: past uvicorn's ws_max_size
            assert await closed_code(big) == 1009
        async with websockets.connect(url, open_timeout=10) as fat:
            await fat.send(json.dumps({"type": "auth", "token": "y" * 5000}))  # under ws_max_size, over the auth frame
            assert await closed_code(fat) == 1009
        first = await websockets.connect(url, open_timeout=10, additional_headers=auth(TOKEN_A))
        assert json.loads(await first.recv())["type"] == "ready"
        # A second socket for the same token is closed with "try again later"; another token still gets in.
        async with websockets.connect(url, open_timeout=10, additional_headers=auth(TOKEN_A)) as second:
            assert await closed_code(second) == 1013
        other = await websockets.connect(url, open_timeout=10, additional_headers=auth(TOKEN_B))
        assert json.loads(await other.recv())["type"] == "ready"
        waiting = await websockets.connect(url, open_timeout=10)  # the third open socket, not authenticated yet
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, open_timeout=10)
        assert refused.value.response.status_code == 403
        for socket in (first, other, waiting):
            await socket.close()

    asyncio.run(scenario())
    # Each slot is released when the server's handler ends, just after the close handshake the client awaited.
    wait_for(lambda: server.service.sockets.active() == 0, timeout=10, interval=0.05,
             message="every WebSocket slot released")


def test_a_client_leaving_a_reply_that_is_not_streamed_stops_it(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, **LONG)
    server = start_server(config, engine=SlowEngine(parse_config(config)))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", headers=auth(), timeout=1.0,
                   json={"messages": [{"role": "user", "content": "talk"}], "max_tokens": 1000, "temperature": 1.0})
    deadline = time.monotonic() + 5
    while server.service.stream_slots.active() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.service.stream_slots.active() == 0
    assert server.service.metrics.cancelled._value.get() == 1


def test_a_generation_past_its_deadline_is_a_504(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, **LONG)
    config["engine"]["generationTimeoutSeconds"] = 0.2
    server = start_server(config, engine=SlowEngine(parse_config(config)))
    body = {"messages": [{"role": "user", "content": "talk"}], "max_tokens": 1000, "temperature": 1.0}
    timed_out = httpx.post(f"{server.url}/v1/chat/completions", headers=auth(), json=body, timeout=30)
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "generation_timeout"
    streamed = httpx.post(f"{server.url}/v1/chat/completions", headers=auth(), json={**body, "stream": True}, timeout=30)
    assert sse_events(streamed.text)[-1]["error"]["code"] == "generation_timeout"


def test_sigterm_ends_a_stream_with_an_error_event(tmp_path, tiny_model_dir, artifacts_dir):
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, **LONG)
    config["limits"]["shutdownGraceSeconds"] = 0
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config))
    process = ServerProcess(path, tmp_path / "server.log")
    process.start()
    try:
        body = {"messages": [{"role": "user", "content": "talk"}], "max_tokens": 1000, "temperature": 1.0, "stream": True}
        with httpx.stream("POST", f"{process.url}/v1/chat/completions", headers=auth(), json=body, timeout=30) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            process.process.send_signal(15)
            rest = "\n".join(lines)
        assert sse_events(rest)[-1]["error"]["code"] == "server_shutting_down"
        # uvicorn re-raises SIGTERM once drained: the process ends by the signal, on its own, in time.
        assert process.process.wait(timeout=20) in (0, -15)
    finally:
        process.stop()


def test_an_engine_that_cannot_start_recovers_by_config_and_liveness_sees_it_stuck(tmp_path, tiny_model_dir, artifacts_dir):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir / "v1-aaaa", artifacts / "v1-aaaa")
    (artifacts / "broken").mkdir()  # no manifest, no weights: cannot be loaded
    config = server_config(tmp_path, tiny_model_dir, artifacts, adapter={"version": "broken", "dir": str(artifacts)})
    config["engine"]["unhealthyAfterSeconds"] = 1.0
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config))
    server = ThreadServer(config, config_path=path)
    server.thread = threading.Thread(target=server.server.run, daemon=True)
    server.thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
            time.sleep(0.1)
        stuck = httpx.get(f"{server.url}/healthz", timeout=2)
        assert stuck.status_code == 503 and stuck.json() == {"status": "failed"}
        assert httpx.get(f"{server.url}/readyz", timeout=2).json() == {"status": "failed"}  # no versions without a token
        # Rolled back to the last good adapter through the config: the same process serves it.
        path.write_text(yaml.safe_dump({**config, "adapter": {"version": "v1-aaaa", "dir": str(artifacts)}}))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and httpx.get(f"{server.url}/readyz", timeout=2).status_code != 200:
            time.sleep(0.1)
        ready = httpx.get(f"{server.url}/readyz", headers=auth(), timeout=2).json()
        assert ready["status"] == "ready" and ready["adapterVersion"] == "v1-aaaa"
        assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    finally:
        server.__exit__(None, None, None)
