"""/api/ai-echo/chat (one reply), /api/ai-echo/stream (SSE) and /api/ai-echo/ws (WebSocket).

Stream events, one JSON object per `data:` line:
  {"type": "session", "sessionId": ...}       first, so a client that sent no sessionId learns it
  {"type": "chunk", "content": "..."}          each piece of the reply as it is generated
  {"type": "complete", "response": "...", "sessionId": ..., "metadata": {...}, "messageId": ...}
  {"type": "error", "error": {"code", "message", "field"}}   instead of complete, if it failed
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from ..auth import Principal, bearer_token
from ..dependencies import audit_auth, authenticate_token, authorize, get_service
from ..errors import APIError, validation_error
from ..schemas import GENERATION_ERRORS, ChatRequest, ChatResponse, StatsOut, error_responses
from ..service import ChatService, Turn
from ..sse import SSE_MEDIA_TYPE
from ..streaming import event_stream, unless_disconnected, with_error_frame

# The auth message is a type and a token: anything larger before authentication is refused.
AUTH_FRAME_BYTES = 4096
# How an APIError closes a socket: 4401 unauthorized, 1009 too big, 1013 try again later, else 1008.
WEBSOCKET_CLOSE_CODES = {401: 4401, 413: 1009, 429: 1013}

router = APIRouter(prefix="/api/ai-echo", tags=["chat"], responses=error_responses(*GENERATION_ERRORS, 404))


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, request: Request, principal: Principal = Depends(authorize),
               service: ChatService = Depends(get_service)) -> ChatResponse:
    async def answer() -> ChatResponse:
        async with service.turn(principal, body.message, body.session_id) as turn:
            reply = await service.complete(turn)
        return ChatResponse(response=reply, session_id=turn.session.id, metadata=turn.metadata,
                            message_id=turn.message_id)

    return await unless_disconnected(request, answer())


@router.get("/stats", response_model=StatsOut)
async def stats(principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)) -> StatsOut:
    """Per adapter version: sessions and ratings (stored), replies, errors and latency (this process).
    Numbers only: no text, no session ids."""
    return StatsOut.model_validate(service.stats())


def error_event(error: APIError) -> dict:
    return {"type": "error", **error.body()}


async def turn_events(service: ChatService, turn: Turn):
    """The SSE/WebSocket events of one turn, as dicts (an error event comes from with_error_frame)."""
    yield {"type": "session", "sessionId": turn.session.id}
    async with contextlib.aclosing(service.generate(turn)) as pieces:
        async for piece in pieces:
            yield {"type": "chunk", "content": piece}
    yield {"type": "complete", "response": turn.reply, "sessionId": turn.session.id, "metadata": turn.metadata,
           "messageId": turn.message_id}


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
    """Authenticate with an `Authorization: Bearer` header, or a first message {"type": "auth", "token"}
    within limits.websocketAuthSeconds (else closed with 1008); that first message may be at most
    AUTH_FRAME_BYTES, later ones limits.maxRequestBytes (else 1009). Past limits.maxWebsockets open
    sockets the handshake is refused; past limits.websocketsPerToken the socket is closed with 1013.

    Then each {"message", "sessionId"} message gets the same events as /stream. A message
    {"type": "stop"}, or closing the socket, stops the reply being generated.
    """
    service: ChatService = websocket.app.state.service
    try:
        async with service.socket_slot(None):
            await websocket.accept()
            principal = await authenticate_websocket(websocket, service)
            async with service.socket_slot(principal):
                await websocket.send_json({"type": "ready"})
                while True:
                    incoming = await receive_frame(websocket, service.config.limits.max_request_bytes)
                    await answer_websocket_message(websocket, service, principal, incoming)
    except APIError as error:
        if websocket.application_state == WebSocketState.CONNECTING:
            await websocket.close()  # before accept: the handshake gets 403
            return
        await websocket.send_json(error_event(error))
        await websocket.close(code=WEBSOCKET_CLOSE_CODES.get(error.status, 1008))
    except WebSocketDisconnect:
        return


async def authenticate_websocket(websocket: WebSocket, service: ChatService) -> Principal:
    token = bearer_token(websocket.headers.get("authorization"))
    if token is None:
        deadline = service.config.limits.websocket_auth_seconds
        try:
            first = await asyncio.wait_for(receive_frame(websocket, AUTH_FRAME_BYTES), deadline)
        except TimeoutError:
            audit_auth(websocket, None, "auth_timeout")
            raise APIError(408, "auth_timeout", "authenticate within limits.websocketAuthSeconds", "token") from None
        token = auth_message_token(first)
    return authenticate_token(websocket, token)


def auth_message_token(text: str) -> str | None:
    try:
        first = json.loads(text)
    except ValueError:
        return None
    return first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None


async def receive_frame(websocket: WebSocket, max_bytes: int) -> str:
    """The next text message; one over `max_bytes` (uvicorn's ws_max_size caps what is even read) is a 413."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data = message.get("text") if message.get("text") is not None else message.get("bytes") or b""
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise APIError(413, "frame_too_large", f"a message may be at most {max_bytes} bytes here", "body")
    if isinstance(data, bytes):
        raise APIError(400, "text_frames_only", "send JSON in text frames", "body")
    return data


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
