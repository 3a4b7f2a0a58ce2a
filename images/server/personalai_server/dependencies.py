"""FastAPI dependencies: the service of this app, and the caller's identity (bearer token)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .auth import Principal
from .errors import APIError
from .service import ChatService

bearer = HTTPBearer(auto_error=False, description="A token from the server's auth Secret")


def get_service(request: Request) -> ChatService:
    return request.app.state.service


def authenticate_token(request_state, token: str | None) -> Principal:
    principal = request_state.tokens.authenticate(token)
    if principal is None:
        raise APIError(
            401, "unauthorized", "a valid bearer token is required", "Authorization", {"WWW-Authenticate": "Bearer"}
        )
    return principal


async def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller, after its token checked out and its request was counted against its rate limit."""
    principal = authenticate_token(request.app.state, credentials.credentials if credentials else None)
    request.app.state.service.count_request(principal)
    request.state.owner = principal.short_id
    return principal
