"""The one way a route streams a reply: Server-Sent Events, held open by a stream slot.

    return await event_stream(service.stream_slot(principal), lambda _: frames(), error_frame)

`hold` (a stream slot, or a whole turn that holds one) is entered before any byte is sent, so its
refusals are plain HTTP errors; it stays held until the response is over, however it ends: the
frames ran out, an APIError became the protocol's error frame, the client went away, or the
server is stopping. Then the frames are closed (which stops the engine) and `hold` is left, which
gives the slot back. A route maps only its own frame format.

A route that answers once (no stream) runs its generation through `unless_disconnected`, so a client
that leaves stops the engine there too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from .errors import APIError
from .sse import SSE_HEADERS, SSE_MEDIA_TYPE, format_frame

Held = TypeVar("Held")
Result = TypeVar("Result")
# How often a route that answers once checks that its client is still there.
DISCONNECT_POLL_SECONDS = 0.25
ErrorFrame = Callable[[APIError], Any]


async def with_error_frame(frames: AsyncIterator[Any], error_frame: ErrorFrame) -> AsyncIterator[Any]:
    """The frames; if they fail with an APIError, that error in the protocol's shape ends them instead."""
    try:
        async with contextlib.aclosing(frames) as each:
            async for frame in each:
                yield frame
    except APIError as error:
        yield error_frame(error)


class EventStream(StreamingResponse):
    """An SSE response whose frames and hold are closed when the response is over, whatever ended it."""

    def __init__(self, frames: AsyncIterator[Any], error_frame: ErrorFrame, hold: AsyncExitStack):
        self.frames = with_error_frame(frames, error_frame)
        self.hold = hold
        super().__init__(self.lines(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)

    async def lines(self) -> AsyncIterator[str]:
        async for frame in self.frames:
            yield format_frame(frame)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.frames.aclose()
            await self.hold.aclose()


async def event_stream(
    hold: AbstractAsyncContextManager[Held], frames: Callable[[Held], AsyncIterator[Any]], error_frame: ErrorFrame,
) -> EventStream:
    """Enter `hold`, then stream `frames(what it holds)` as SSE (sse.DONE is OpenAI's end marker)."""
    async with AsyncExitStack() as stack:
        held = await stack.enter_async_context(hold)
        # The response owns the hold from here: it is left when the response is over.
        return EventStream(frames(held), error_frame, stack.pop_all())



async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result:
    """The result of `work`; if the client disconnects first, `work` is cancelled (closing its
    generation stops the engine and gives its stream slot back) and 499 is the (unread) answer."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise APIError(499, "client_disconnected", "the client went away before the reply was complete")
        return task.result()
    finally:
        task.cancel()
