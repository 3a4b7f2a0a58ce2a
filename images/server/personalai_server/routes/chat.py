"""/api/ai-echo/chat (one reply), /api/ai-echo/stream (SSE) and /api/ai-echo/ws (WebSocket).

Stream events, one JSON object per `data:` line:
  {"type": "session", "sessionId": ...}       first, so a client that sent no sessionId learns it
  {"type": "chunk", "content": "..."}          each piece of the reply as it is generated
  {"type": "complete", "response": "...", "sessionId": ..., "metadata": {...}}
  {"type": "error", "error": {"code", "message", "field"}}   instead of complete, if it failed
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from ..auth import Principal, bearer_token
from ..dependencies import authenticate_token, authorize, get_service
from ..errors import APIError, field_path
from ..schemas import ChatRequest, ChatResponse, ErrorResponse
from ..service import ChatService, Turn
from ..sse import SSE_HEADERS, SSE_MEDIA_TYPE, format_event

ERRORS = {
    400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
    413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
    502: {"model": ErrorResponse}, 503: {"model": ErrorResponse},
}

router = APIRouter(prefix="/api/ai-echo", tags=["chat"], responses=ERRORS)


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)) -> ChatResponse:
    turn = await service.prepare_turn(principal, body.message, body.session_id)
    try:
        reply = await service.complete(turn)
    finally:
        turn.release()
    return ChatResponse(response=reply, session_id=turn.session.id, metadata=turn.metadata)


async def turn_events(service: ChatService, turn: Turn):
    """The SSE/WebSocket events of one turn, as dicts."""
    yield {"type": "session", "sessionId": turn.session.id}
    try:
        async with contextlib.aclosing(service.generate(turn)) as pieces:
            async for piece in pieces:
                yield {"type": "chunk", "content": piece}
    except APIError as error:
        yield {"type": "error", **error.body()}
        return
    yield {"type": "complete", "response": turn.reply, "sessionId": turn.session.id, "metadata": turn.metadata}


@router.post(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "Server-Sent Events: chunk events, then complete"}},
)
async def stream(body: ChatRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)):
    turn = await service.prepare_turn(principal, body.message, body.session_id)
    events = turn_events(service, turn)

    async def body_lines():
        async for event in events:
            yield format_event(event)

    lines = body_lines()

    async def finish() -> None:
        # Runs after the response ends or the client left: closing the generators stops the engine.
        await lines.aclose()
        await events.aclose()
        turn.release()

    return StreamingResponse(lines, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS, background=BackgroundTask(finish))


@router.websocket("/ws")
async def websocket_chat(websocket: WebSocket) -> None:
    """Authenticate with an `Authorization: Bearer` header, or a first message {"type": "auth", "token"}.

    Then each {"message", "sessionId"} message gets the same events as /stream. A message
    {"type": "stop"}, or closing the socket, stops the reply being generated.
    """
    await websocket.accept()
    state = websocket.app.state
    service: ChatService = state.service
    try:
        token = bearer_token(websocket.headers.get("authorization"))
        if token is None:
            first = await websocket.receive_json()
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        principal = authenticate_token(state, token)
        await websocket.send_json({"type": "ready"})
        while True:
            incoming = await websocket.receive_text()
            await answer_websocket_message(websocket, service, principal, incoming)
    except APIError as error:
        await websocket.send_json({"type": "error", **error.body()})
        await websocket.close(code=4401 if error.status == 401 else 1008)
    except (WebSocketDisconnect, json.JSONDecodeError):
        return


async def answer_websocket_message(websocket: WebSocket, service: ChatService, principal: Principal, incoming: str) -> None:
    try:
        service.count_request(principal)
        request = ChatRequest.model_validate_json(incoming)
        turn = await service.prepare_turn(principal, request.message, request.session_id)
    except ValidationError as error:
        first = error.errors()[0]
        field = field_path(first["loc"])
        if first["type"] == "json_invalid":
            raise_error = APIError(400, "malformed_json", "message is not valid JSON", "body")
        else:
            raise_error = APIError(422, "invalid_field", f"{field}: {first['msg']}", field)
        await websocket.send_json({"type": "error", **raise_error.body()})
        return
    except APIError as error:
        if error.status == 401:
            raise
        await websocket.send_json({"type": "error", **error.body()})
        return

    async def send_events() -> None:
        async with contextlib.aclosing(turn_events(service, turn)) as events:
            async for event in events:
                await websocket.send_json(event)

    sender = asyncio.create_task(send_events())
    listener = asyncio.create_task(websocket.receive_text())
    try:
        while not sender.done():
            done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done:
                # Anything but a stop request mid-reply is refused; a disconnect ends the reply too.
                try:
                    text = listener.result()
                except WebSocketDisconnect:
                    sender.cancel()
                    raise
                if _is_stop(text):
                    sender.cancel()
                    break
                await websocket.send_json({"type": "error", "error": {"code": "busy", "message": "wait for the reply to complete", "field": None}})
                listener = asyncio.create_task(websocket.receive_text())
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        turn.release()


def _is_stop(text: str) -> bool:
    try:
        return json.loads(text).get("type") == "stop"
    except (ValueError, AttributeError):
        return False
