"""A streamed response that always cleans up after itself, however it ends."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse


class ClosingStream(StreamingResponse):
    """Streams `chunks`; when the response is over (sent whole, the client gone, the server stopping),
    closes them and calls each of `on_close` (a watch ends, an upstream connection is released,
    a stream slot is given back). Starlette alone would leave an abandoned generator to the collector."""

    def __init__(self, chunks: AsyncIterator[Any], on_close: list[Callable[[], Any]] | None = None, **kwargs: Any):
        self.chunks = chunks
        self.on_close = list(on_close or [])
        super().__init__(chunks, **kwargs)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            for callback in self.on_close:
                result = callback()
                if inspect.isawaitable(result):
                    await result
