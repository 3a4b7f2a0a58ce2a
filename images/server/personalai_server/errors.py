"""One JSON error shape for every failure: {"error": {"code", "message", "field"}}.

Messages name the field and the rule, never the value sent (it may be a person's words).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def field_path(location: tuple | list) -> str:
    """`("body", "settings", "maxTokens")` -> "settings.maxTokens"."""
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_error(errors: Sequence[Any], subject: str = "request body") -> APIError:
    """The first of pydantic's `errors` (of a request body, or of a WebSocket `subject`) as an APIError."""
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "invalid"}
    if first.get("type") == "json_invalid":
        return APIError(400, "malformed_json", f"{subject} is not valid JSON", "body")
    field = field_path(first.get("loc", ()))
    if first.get("type") == "missing" and field == "body":
        return APIError(400, "malformed_json", f"{subject} is missing", "body")
    return APIError(422, "invalid_field", f"{field}: {first.get('msg', 'invalid value')}", field)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "http_error")
        field = "body" if exc.status_code == 413 else None
        return error_response(APIError(exc.status_code, code, str(exc.detail), field, getattr(exc, "headers", None)))
