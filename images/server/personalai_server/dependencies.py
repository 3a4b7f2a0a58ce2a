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


def optional_principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal | None:
    """The caller if it sent a valid token, else None (for endpoints that say more to a token holder)."""
    return request.app.state.tokens.authenticate(credentials.credentials if credentials else None)


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller, whose token checked out; not counted against a rate limit (metrics, the API document)."""
    return authenticate_token(request.app.state, credentials.credentials if credentials else None)


async def authorize(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    """The caller, after its token checked out and its request was counted against its rate limit."""
    request.app.state.service.count_request(principal)
    request.state.owner = principal.short_id
    return principal
