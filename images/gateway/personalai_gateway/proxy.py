"""The chat routes, passed through to the person's own chat server as they come and go.

The method, path, query, body and Authorization header go on; the reply comes back chunk by chunk
as the server sends it (a streamed SSE reply is never buffered). Hop-by-hop headers (RFC 9110 7.6.1)
belong to one connection and are dropped both ways, as is what the connection itself decides
(content-length, host).
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from starlette.requests import Request

from .responses import ClosingStream

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-connection"})
# Set by the connection that carries the message, not by the message.
CONNECTION_OWN = frozenset({"host", "content-length"})
# The gateway's own server sets these on every answer; the chat server's copies would be second ones.
SERVER_OWN = frozenset({"date", "server"})


def forwarded_headers(headers: Iterable[tuple[str, str]], also: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """`headers` less the hop-by-hop ones, any the Connection header names as its own, and `also`."""
    headers = list(headers)
    named = {token.strip().lower() for name, value in headers if name.lower() == "connection"
             for token in value.split(",")}
    dropped = HOP_BY_HOP | CONNECTION_OWN | named | also
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def chat_server_path(path: str) -> str:
    """The chat server serves the same routes: /api/ai-echo/<path>."""
    return "/api/ai-echo/" + path.lstrip("/")


async def forward(client: httpx.AsyncClient, request: Request, body: bytes, base_url: str,
                  path: str) -> ClosingStream:
    """Send `request` (its `body` read, and bounded, by the route) on to `base_url` + the chat path, and
    answer with its reply as a stream."""
    upstream = client.build_request(
        request.method, base_url + chat_server_path(path), params=request.url.query or None,
        headers=forwarded_headers(request.headers.items()), content=body)
    response = await client.send(upstream, stream=True)
    # aiter_raw: the bytes as they arrive (compressed or not, with their own content-encoding header).
    return ClosingStream(response.aiter_raw(), [response.aclose], status_code=response.status_code,
                         headers=dict(forwarded_headers(response.headers.items(), SERVER_OWN)))
