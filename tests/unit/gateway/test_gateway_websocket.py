"""The WebSocket relay against a real stand-in chat server socket (uvicorn on loopback): the token goes
on as a header, frames pass both ways unchanged, the server's close code comes back, and the bounds
(frame size, idle time) close the socket with the chat server's own codes."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from personalai_gateway.websocket import SocketLimits, auth_frame_token, first_frame_token, refuse, relay

pytestmark = pytest.mark.unit
TOKEN = "the-persons-token-0123456789"


def stand_in_chat_server() -> FastAPI:
    app = FastAPI()

    @app.websocket("/api/ai-echo/ws")
    async def chat(websocket: WebSocket):
        if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
            await websocket.close()
            return
        await websocket.accept()
        await websocket.send_text(json.dumps({"type": "ready"}))
        while (text := await websocket.receive_text()) != "bye":
            await websocket.send_text(json.dumps({"echo": text}))
        await websocket.close(code=4000)

    return app


def gateway(upstream: str, limits: SocketLimits) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        token = await first_frame_token(websocket)
        if token is None:
            await refuse(websocket, 4401, "unauthenticated", "no token")
            return
        await relay(websocket, upstream, token, limits)

    return app


def serve(app: FastAPI) -> tuple[str, uvicorn.Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return f"ws://127.0.0.1:{port}", server


@pytest.fixture
def through():
    """through(limits) -> the gateway's ws URL, relaying to a running stand-in chat server."""
    servers = []

    def start(limits: SocketLimits, upstream: str | None = None) -> str:
        if upstream is None:
            url, server = serve(stand_in_chat_server())
            servers.append(server)
            upstream = url + "/api/ai-echo/ws"
        url, server = serve(gateway(upstream, limits))
        servers.append(server)
        return url + "/ws"

    yield start
    for server in servers:
        server.should_exit = True


LIMITS = SocketLimits(max_frame_bytes=2048, idle_seconds=5.0, connect_seconds=2.0)


def test_frames_pass_both_ways_and_the_servers_close_code_comes_back(through):
    with connect(through(LIMITS), open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "ready"}
        ws.send('{"message": "hello"}')
        assert json.loads(ws.recv(timeout=5)) == {"echo": '{"message": "hello"}'}
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4000


def test_a_frame_over_the_limit_closes_with_1009(through):
    with connect(through(LIMITS), open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        ws.recv(timeout=5)
        ws.send("x" * 4096)
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == "frame_too_large"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1009


def test_an_idle_socket_is_closed_with_1001(through):
    with connect(through(SocketLimits(2048, idle_seconds=0.5, connect_seconds=2.0)), open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        ws.recv(timeout=5)
        started = time.monotonic()
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == "idle"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001 and 0.3 < time.monotonic() - started < 3


def test_an_unreachable_chat_server_closes_with_try_again_later(through):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"ws://127.0.0.1:{probe.getsockname()[1]}/api/ai-echo/ws"
    with connect(through(LIMITS, nobody), open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == "chat_server_unreachable"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1013


def test_only_an_auth_frame_with_a_token_authenticates():
    assert auth_frame_token(json.dumps({"type": "auth", "token": "t"})) == "t"
    for text in ("not json", "[]", json.dumps({"token": "t"}), json.dumps({"type": "auth", "token": 5}),
                 json.dumps({"type": "auth", "token": ""})):
        assert auth_frame_token(text) is None, text
