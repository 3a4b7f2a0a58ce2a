"""/api/ai-echo/sessions: create, list, read, update and delete chat sessions of the caller's token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ..auth import Principal
from ..dependencies import authorize, get_service
from ..errors import APIError
from ..schemas import (
    REQUEST_ERRORS,
    MessageOut,
    RatingOut,
    RatingRequest,
    SessionCreate,
    SessionDetail,
    SessionList,
    SessionOut,
    SessionSettings,
    SessionUpdate,
    error_responses,
)
from ..service import ChatService
from ..storage import BASE_VERSION, StoredSession

router = APIRouter(prefix="/api/ai-echo/sessions", tags=["sessions"], responses=error_responses(*REQUEST_ERRORS, 404))


def session_out(session: StoredSession) -> SessionOut:
    return SessionOut(
        session_id=session.id,
        title=session.title,
        settings=SessionSettings.model_validate(session.settings),
        created_at=session.created_at,
        updated_at=session.updated_at,
        message_count=session.message_count,
    )


@router.post("", status_code=201, response_model=SessionOut, response_model_by_alias=True)
async def create_session(
    body: SessionCreate, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
) -> SessionOut:
    return session_out(service.create_session(principal, body.title, body.settings))


@router.get("", response_model=SessionList)
async def list_sessions(principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)) -> SessionList:
    return SessionList(sessions=[session_out(s) for s in service.store.list_sessions(principal.owner)])


@router.get("/{sessionId}", response_model=SessionDetail)
async def get_session(
    sessionId: str, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)  # noqa: N803
) -> SessionDetail:
    session = service.get_session(principal, sessionId, with_messages=True)
    messages = [MessageOut(role=m.role, content=m.content, timestamp=m.created_at, metadata=m.metadata,
                           message_id=m.id, rating=m.rating) for m in session.messages]
    return SessionDetail(**session_out(session).model_dump(), messages=messages)


@router.put("/{sessionId}", response_model=SessionOut)
async def update_session(
    sessionId: str,  # noqa: N803
    body: SessionUpdate,
    principal: Principal = Depends(authorize),
    service: ChatService = Depends(get_service),
) -> SessionOut:
    service.get_session(principal, sessionId)
    settings = None
    if body.settings is not None:
        settings = service.check_settings(body.settings).model_dump(by_alias=True)
    updated = service.store.update_session(principal.owner, sessionId, body.title, settings)
    if updated is None:
        service.get_session(principal, sessionId)  # deleted meanwhile: the usual 404
    return session_out(updated)


@router.delete("/{sessionId}", status_code=204, response_class=Response)
async def delete_session(
    sessionId: str, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)  # noqa: N803
) -> Response:
    service.delete_session(principal, sessionId)
    return Response(status_code=204)


def message_not_found() -> APIError:
    return APIError(404, "message_not_found", "no such reply in this session", "messageId")


def parse_message_id(message_id: str) -> int:
    if not message_id.isdigit():
        raise message_not_found()
    return int(message_id)


@router.post("/{sessionId}/messages/{messageId}/rating", response_model=RatingOut)
async def rate_message(
    sessionId: str,  # noqa: N803
    messageId: str,  # noqa: N803
    body: RatingRequest,
    principal: Principal = Depends(authorize),
    service: ChatService = Depends(get_service),
) -> RatingOut:
    """Rate a reply up or down (with an optional note); rating it again replaces the rating."""
    service.get_session(principal, sessionId)
    stored = service.store.rate(principal.owner, sessionId, parse_message_id(messageId), body.rating, body.note)
    if stored is None:
        raise message_not_found()
    service.metrics.ratings.labels(version=stored.version or BASE_VERSION, rating=stored.rating).inc()
    return RatingOut(session_id=sessionId, message_id=int(messageId), rating=stored.rating,
                     adapter_version=stored.version)


@router.delete("/{sessionId}/messages/{messageId}/rating", status_code=204, response_class=Response)
async def unrate_message(
    sessionId: str,  # noqa: N803
    messageId: str,  # noqa: N803
    principal: Principal = Depends(authorize),
    service: ChatService = Depends(get_service),
) -> Response:
    service.get_session(principal, sessionId)
    if not service.store.unrate(principal.owner, sessionId, parse_message_id(messageId)):
        raise message_not_found()
    return Response(status_code=204)
