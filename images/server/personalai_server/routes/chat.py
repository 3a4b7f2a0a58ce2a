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

from ..auth import Principal, bearer_token
from ..dependencies import authenticate_token, authorize, get_service
from ..errors import APIError, validation_error
from ..schemas import ChatRequest, ChatResponse, ErrorResponse
from ..service import ChatService, Turn
from ..sse import SSE_MEDIA_TYPE
from ..streaming import event_stream, with_error_frame

ERRORS = {
    400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
    413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
    502: {"model": ErrorResponse}, 503: {"model": ErrorResponse},
}

router = APIRouter(prefix="/api/ai-echo", tags=["chat"], responses=ERRORS)


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)) -> ChatResponse:
    async with service.turn(principal, body.message, body.session_id) as turn:
        reply = await service.complete(turn)
    return ChatResponse(response=reply, session_id=turn.session.id, metadata=turn.metadata)


def error_event(error: APIError) -> dict:
    return {"type": "error", **error.body()}


async def turn_events(service: ChatService, turn: Turn):
    """The SSE/WebSocket events of one turn, as dicts (an error event comes from with_error_frame)."""
    yield {"type": "session", "sessionId": turn.session.id}
    async with contextlib.aclosing(service.generate(turn)) as pieces:
        async for piece in pieces:
            yield {"type": "chunk", "content": piece}
    yield {"type": "complete", "response": turn.reply, "sessionId": turn.session.id, "metadata": turn.metadata}


@router.post(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "Server-Sent Events: chunk events, then complete"}},
)
async def stream(body: ChatRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)):
    return await event_stream(service.turn(principal, body.message, body.session_id),
                              lambda turn: turn_events(service, turn), error_event)


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
        await websocket.send_json(error_event(error))
        await websocket.close(code=4401 if error.status == 401 else 1008)
    except (WebSocketDisconnect, json.JSONDecodeError):
        return


def parse_websocket_message(incoming: str) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(incoming)
    except ValidationError as error:
        raise validation_error(error.errors(), "message") from None


async def answer_websocket_message(websocket: WebSocket, service: ChatService, principal: Principal, incoming: str) -> None:
    """One message's turn; a refusal is an error event (but a 401 ends the socket)."""
    try:
        service.count_request(principal)
        request = parse_websocket_message(incoming)
        async with service.turn(principal, request.message, request.session_id) as turn:
            await send_turn(websocket, service, turn)
    except APIError as error:
        if error.status == 401:
            raise
        await websocket.send_json(error_event(error))


async def send_turn(websocket: WebSocket, service: ChatService, turn: Turn) -> None:
    """The turn's events, while listening for a stop request; a disconnect ends the reply too."""

    async def send_events() -> None:
        async with contextlib.aclosing(with_error_frame(turn_events(service, turn), error_event)) as events:
            async for event in events:
                await websocket.send_json(event)

    sender = asyncio.create_task(send_events())
    listener = asyncio.create_task(websocket.receive_text())
    try:
        while not sender.done():
            done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
            if listener in done:
                # Anything but a stop request mid-reply is refused.
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


def _is_stop(text: str) -> bool:
    try:
        return json.loads(text).get("type") == "stop"
    except (ValueError, AttributeError):
        return False
