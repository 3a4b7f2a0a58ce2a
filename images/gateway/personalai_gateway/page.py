"""The chat page: three files under static/, served as they are (no build step, nothing from elsewhere).

The Content-Security-Policy lets the page load and call only this origin, so a reply the page shows
could not run script even if it held some (the page sets model text as textContent, never as HTML).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"index.html": "text/html; charset=utf-8", "chat.js": "text/javascript; charset=utf-8",
               "chat.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def asset(name: str) -> Response:
    if name not in MEDIA_TYPES:
        raise HTTPException(404, "no such file on the chat page")
    return Response((STATIC / name).read_bytes(), media_type=MEDIA_TYPES[name], headers=PAGE_HEADERS)


@router.get("/")
async def index() -> Response:
    return asset("index.html")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    return asset(name)
