"""FastAPI dependencies: the service of this app, and the caller's identity (bearer token)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .auth import Principal
from .errors import APIError
from .service import ChatService

bearer = HTTPBearer(auto_error=False, description="A token from the server's auth Secret")

# The dependencies are `async def` although none awaits: FastAPI runs a plain `def` dependency in a
# worker thread, a hand-off per request (and a wait for one of 40 threads under load) for work that
# takes microseconds (a sha256 and a few stats).


async def get_service(request: Request) -> ChatService:
    return request.app.state.service


def authenticate_token(connection: HTTPConnection, token: str | None) -> Principal:
    """The principal of `token` on this request or WebSocket (audited either way), else a 401."""
    principal = connection.app.state.tokens.authenticate(token)
    audit_auth(connection, principal, None if principal else "unknown_token" if token else "no_token")
    if principal is None:
        raise APIError(
            401, "unauthorized", "a valid bearer token is required", "Authorization", {"WWW-Authenticate": "Bearer"}
        )
    return principal


def audit_auth(connection: HTTPConnection, principal: Principal | None, reason: str | None) -> None:
    """The audit record of an authentication: the path, never the query (it is the caller's to fill)."""
    connection.app.state.service.audit.record(
        "auth", "success" if principal else "failure", transport=connection.scope["type"],
        client=connection.client.host if connection.client else None, path=connection.url.path,
        owner=principal.short_id if principal else None, reason=reason)


async def optional_principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal | None:
    """The caller if it sent a valid token, else None (for endpoints that say more to a token holder)."""
    return request.app.state.tokens.authenticate(credentials.credentials if credentials else None)


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller, whose token checked out; not counted against a rate limit (metrics, the API document)."""
    return authenticate_token(request, credentials.credentials if credentials else None)


async def authorize(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    """The caller, after its token checked out and its request was counted against its rate limit."""
    request.app.state.service.count_request(principal)
    request.state.owner = principal.short_id
    return principal
