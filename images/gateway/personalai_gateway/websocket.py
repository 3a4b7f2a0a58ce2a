"""/api/ai-echo/ws passed through to the person's chat server, frame by frame, both ways.

A socket authenticates as the chat server's own does (personalai_server.routes.chat): an
`Authorization: Bearer` header on the handshake, or, since a browser's WebSocket cannot send one, a
first text frame {"type": "auth", "token"} (at most AUTH_FRAME_BYTES, within AUTH_SECONDS). The gateway
checks the token, then opens the person's chat server socket with the token in the header, and relays:
the server's {"type": "ready"} and every event after it come back unchanged. Bounded: a frame over
`max_frame_bytes` closes the socket with 1009; no frame either way for `idle_seconds` closes it with 1001.
Frames are never logged (they are chat text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect

AUTH_FRAME_BYTES = 4096
AUTH_SECONDS = 10.0
# As the chat server closes: 4401 unauthorized, 1009 too big, 1013 try again later, 1001 going away.
CLOSE_UNAUTHORIZED, CLOSE_TOO_BIG, CLOSE_TRY_LATER, CLOSE_IDLE = 4401, 1009, 1013, 1001


@dataclass(frozen=True)
class SocketLimits:
    max_frame_bytes: int
    idle_seconds: float
    connect_seconds: float


def error_frame(code: str, message: str, field: str | None = None) -> str:
    return json.dumps({"type": "error", "error": {"code": code, "message": message, "field": field}})


def auth_frame_token(text: str) -> str | None:
    """The token of a first frame {"type": "auth", "token": ...}, or None."""
    try:
        first = json.loads(text)
    except ValueError:
        return None
    token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
    return token if isinstance(token, str) and token else None


async def first_frame_token(client: WebSocket) -> str | None:
    """After accept: the token the first frame carries, or None (late, too large, not an auth frame)."""
    try:
        message = await asyncio.wait_for(client.receive(), AUTH_SECONDS)
    except TimeoutError:
        return None
    text = message.get("text")
    if message["type"] != "websocket.receive" or text is None or len(text.encode()) > AUTH_FRAME_BYTES:
        return None
    return auth_frame_token(text)


async def refuse(client: WebSocket, code: int, error: str, message: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await client.send_text(error_frame(error, message))
        await client.close(code=code)


async def relay(client: WebSocket, upstream_url: str, token: str, limits: SocketLimits) -> None:
    """Relay `client` (accepted) and the chat server socket at `upstream_url` until either closes, a frame
    is too large, or both are idle; the chat server's close code is passed on to the person."""
    try:
        upstream = await websockets.connect(upstream_url, additional_headers={"Authorization": f"Bearer {token}"},
                                            max_size=limits.max_frame_bytes, open_timeout=limits.connect_seconds)
    except (OSError, TimeoutError, websockets.WebSocketException):
        await refuse(client, CLOSE_TRY_LATER, "chat_server_unreachable", "your chat server could not be reached")
        return
    last = [time.monotonic()]

    async def inward() -> None:  # the person -> their chat server
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                return
            text, raw = message.get("text"), message.get("bytes")
            data: str | bytes = text if text is not None else (raw or b"")
            if len(data.encode() if isinstance(data, str) else data) > limits.max_frame_bytes:
                await refuse(client, CLOSE_TOO_BIG, "frame_too_large",
                             f"a message may be at most {limits.max_frame_bytes} bytes")
                return
            last[0] = time.monotonic()
            await upstream.send(data)

    async def outward() -> None:  # their chat server -> the person
        try:
            async for data in upstream:
                last[0] = time.monotonic()
                await (client.send_text(data) if isinstance(data, str) else client.send_bytes(data))
        except websockets.ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await client.close(code=CLOSE_TOO_BIG if code == 1009 else code)

    async def watchdog() -> None:
        while (idle := time.monotonic() - last[0]) < limits.idle_seconds:
            await asyncio.sleep(limits.idle_seconds - idle)
        await refuse(client, CLOSE_IDLE, "idle", f"no message for {limits.idle_seconds:g} s")

    tasks = [asyncio.create_task(pump()) for pump in (inward, outward, watchdog)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
