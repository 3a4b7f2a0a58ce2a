"""Probes, metrics, the API document and the chat page.

The kubelet's probes send no token, so /healthz and /readyz answer anyone, with a status word only;
a caller with a token also gets what is served (engine, adapter versions, why it is not). /metrics
and /openapi.json need the token: they describe the adapters and the API to no one else. /metrics
also takes a token of auth.metricsTokensDir, a scraper's, which every other route refuses (401).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import Principal
from ..dependencies import audit_auth, authenticate, authenticate_token, bearer, optional_principal
from ..schemas import Health, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(request: Request) -> JSONResponse:
    """The process is up; 503 once the engine has failed to start for longer than
    engine.unhealthyAfterSeconds (a model still loading is never unhealthy), so the kubelet restarts it."""
    stuck = request.app.state.service.stuck()
    return JSONResponse(Health(status="failed" if stuck else "ok").model_dump(exclude_none=True),
                        status_code=503 if stuck else 200)


def readiness(request: Request, principal: Principal | None) -> JSONResponse:
    service = request.app.state.service
    engine = service.engine
    failed = not engine.ready and service.not_ready_reason is not None
    status = "stopping" if service.shutdown_deadline is not None else (
        "ready" if engine.ready else "failed" if failed else "loading")
    body = Health(status=status)
    if principal is not None:
        body = body.model_copy(update={
            "engine": engine.kind, "adapterVersion": engine.active_adapter, "loadedAdapters": engine.loaded_adapters(),
            "reason": service.not_ready_reason if failed else None,
        })
    return JSONResponse(body.model_dump(exclude_none=principal is None), status_code=200 if status == "ready" else 503)


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request, principal: Principal | None = Depends(optional_principal)) -> JSONResponse:
    """Ready only once the model (and the configured adapter) is loaded; "failed" when it cannot be
    (an adapter refused by its digest, an engine that did not start); "stopping" after SIGTERM.
    With a token: the engine, the adapter versions and the reason too."""
    return readiness(request, principal)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request, principal: Principal | None = Depends(optional_principal)) -> JSONResponse:
    """TGI's and vLLM's name for readiness, for servers that use this one as their engine."""
    return readiness(request, principal)


async def metrics_reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """A scraper with a token of auth.metricsTokensDir, else the person (audited either way), else a 401.
    Only this route asks the scrapers' store, so their tokens read metrics and nothing else."""
    token = credentials.credentials if credentials else None
    scraper = request.app.state.metrics_tokens.authenticate(token)
    if scraper is None:
        return authenticate_token(request, token)
    audit_auth(request, scraper, None)
    return scraper


@router.get("/metrics", response_class=Response, responses=error_responses(401))
async def metrics(request: Request, _principal: Principal = Depends(metrics_reader)) -> Response:
    service = request.app.state.service
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    service.metrics.model_ready.set(1 if service.engine.ready else 0)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", include_in_schema=False, responses=error_responses(401))
async def openapi_document(request: Request, _principal: Principal = Depends(authenticate)) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def chat_page() -> HTMLResponse:
    page = resources.files("personalai_server").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"})
