"""Probes, metrics and the chat page: no token needed for any of these."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (the model may still be loading)."""
    return Health(status="ok")


def readiness(request: Request) -> JSONResponse:
    service = request.app.state.service
    engine = service.engine
    failed = not engine.ready and service.not_ready_reason is not None
    body = Health(
        status="ready" if engine.ready else "failed" if failed else "loading",
        engine=engine.kind,
        adapterVersion=engine.active_adapter,
        loadedAdapters=engine.loaded_adapters(),
        reason=service.not_ready_reason if failed else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if engine.ready else 503)


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """Ready only once the model (and the configured adapter) is loaded; "failed", with the reason,
    when it cannot be (an adapter refused by its digest, an engine that did not start)."""
    return readiness(request)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> JSONResponse:
    """TGI's and vLLM's name for readiness, for servers that use this one as their engine."""
    return readiness(request)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    service = request.app.state.service
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    service.metrics.model_ready.set(1 if service.engine.ready else 0)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def chat_page() -> HTMLResponse:
    page = resources.files("personalai_server").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"})
