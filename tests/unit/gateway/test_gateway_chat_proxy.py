"""The chat pass-through against a real local HTTP server standing in for the chat server: a uvicorn
app streaming SSE. The stand-in sends its second chunk only after the client has read the first
through the gateway's proxy, so a proxy that buffered the reply would never finish (and fail on time)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from personalai_gateway.proxy import forward

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_server(release: asyncio.Event, seen: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/api/ai-echo/chat/stream")
    async def stream(request: Request):
        seen.update(headers=dict(request.headers), query=request.url.query, body=await request.body())

        async def frames():
            yield 'data: {"token":"Hel"}\n\n'
            await release.wait()
            yield 'data: {"token":"lo"}\n\n'
            yield 'data: {"done":true}\n\n'

        return StreamingResponse(frames(), media_type="text/event-stream", headers={"X-Chat": "1"})

    return app


def gateway(upstream: str) -> FastAPI:
    app = FastAPI()
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))

    @app.api_route("/api/ai-echo/{path:path}", methods=["GET", "POST"])
    async def chat(path: str, request: Request):
        return await forward(client, request, await request.body(), upstream, path)

    return app


async def serving(app: FastAPI, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):
        if server.started:
            return server
        await asyncio.sleep(0.02)
    raise TimeoutError("uvicorn did not start")


async def chat_through_the_proxy() -> tuple[list[str], dict, httpx.Headers]:
    release, seen = asyncio.Event(), {}
    chat_port, gateway_port = free_port(), free_port()
    servers = [await serving(chat_server(release, seen), chat_port),
               await serving(gateway(f"http://127.0.0.1:{chat_port}"), gateway_port)]
    chunks: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client, client.stream(
                "POST", f"http://127.0.0.1:{gateway_port}/api/ai-echo/chat/stream?mode=wise",
                headers={"Authorization": "Bearer person-token-0123456789", "Connection": "keep-alive, X-Hop",
                         "X-Hop": "1"},
                json={"message": "hi"}) as response:
            headers = response.headers
            async for chunk in response.aiter_text():
                chunks.append(chunk)
                release.set()  # only now may the chat server go on: the first chunk came through alone
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.sleep(0.2)
    return chunks, seen, headers


def test_a_streamed_reply_passes_through_chunk_by_chunk_with_the_request_intact():
    chunks, seen, headers = asyncio.run(asyncio.wait_for(chat_through_the_proxy(), timeout=30))
    assert chunks[0] == 'data: {"token":"Hel"}\n\n', "the first event arrived before the reply was complete"
    assert "".join(chunks).endswith('data: {"done":true}\n\n')
    assert headers["content-type"].startswith("text/event-stream") and headers["x-chat"] == "1"
    assert len(headers.get_list("server")) == 1 and len(headers.get_list("date")) == 1, "one server's own headers"
    assert seen["headers"]["authorization"] == "Bearer person-token-0123456789"
    assert "x-hop" not in seen["headers"], "a header the Connection header names is the hop's own"
    assert seen["query"] == "mode=wise" and seen["body"] == b'{"message":"hi"}'

