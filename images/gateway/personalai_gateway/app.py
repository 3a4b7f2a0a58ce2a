"""The gateway: the brief's app API for every person in the watched namespaces, behind their own token.

    app = build_app(GatewaySettings.from_env())

A request's `Authorization: Bearer <token>` names one PersonalAI (tokens.TokenIndex); every route
answers for that one only, and there is no user id in a URL that could point elsewhere. A `userId`
in a body must be the token's own. Routes parse, call the API (kube), shape the answer (views, start,
estimate) and report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import httpx
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketState

from personalai_contracts.names import chat_server_name

from . import estimate as estimates
from . import page
from . import websocket as sockets
from .audit import GatewayAudit
from .kube import Kube, KubeError, credentials
from .metrics import CountRequests, GatewayMetrics
from .proxy import forward
from .responses import ClosingStream
from .settings import GatewaySettings
from .sse import SSE_HEADERS, SSE_MEDIA_TYPE
from .start import ConfigError, StartRequest, answer_config, merged_training, training_changes
from .streams import StreamSlots, run_events
from .tokens import Person, TokenIndex, follow, hash_token, token_sha256
from .views import data_ready, latest_run, me, progress_event, readiness, training_status

log = logging.getLogger(__name__)
CHAT_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class APIError(Exception):
    """An answer other than 2xx: {"error": {"code", "message", "field"}}; messages never quote a value sent."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message, "field": self.field}},
                            status_code=self.status, headers=self.headers)


def unauthenticated() -> APIError:
    return APIError(401, "unauthenticated", "send Authorization: Bearer <your PersonalAI's token>",
                    headers={"WWW-Authenticate": "Bearer"})


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes however it is sent (declared or chunked)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, "request_too_large", f"request body is over {limit} bytes", "body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, "request_too_large", f"request body is over {limit} bytes", "body")
    return bytes(body)


def own_user_id(body: dict, person: Person, request: Request) -> None:
    """A `userId` in a body may only name the token's own PersonalAI."""
    if "userId" in body and body["userId"] != person.name:
        request.app.state.audit.userid_mismatch(request, person)
        raise APIError(403, "forbidden", "userId must be your own PersonalAI (the token's); leave it out", "userId")


def build_app(settings: GatewaySettings, kube: Kube | None = None) -> FastAPI:
    index = TokenIndex()
    metrics = GatewayMetrics()
    slots = StreamSlots(settings.streams_per_person)
    socket_limits = sockets.SocketLimits(settings.max_request_bytes, settings.proxy_read_seconds,
                                         settings.proxy_connect_seconds)
    audit = GatewayAudit(settings.audit_sink, settings.audit_keep_days, settings.audit_success_interval_seconds)
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state["kube"] = kube or Kube(credentials())
        state["chat"] = httpx.AsyncClient(timeout=httpx.Timeout(settings.proxy_read_seconds,
                                                                connect=settings.proxy_connect_seconds))
        followers = [asyncio.create_task(follow(state["kube"], index, namespace))
                     for namespace in settings.namespaces or [""]]
        try:
            yield
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await state["chat"].aclose()
            if kube is None:
                await state["kube"].close()
            audit.close()

    app = FastAPI(title="personalai gateway", version="0.1.0", lifespan=lifespan,
                  description="The brief's training and chat API for one person's PersonalAI. "
                  "Send `Authorization: Bearer <token>`.")

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return APIError(error.status_code, "not_found" if error.status_code == 404 else "http_error",
                        str(error.detail)).response()

    @app.exception_handler(KubeError)
    async def _kube_error(_request: Request, error: KubeError) -> JSONResponse:
        log.warning("Kubernetes API refused a request: %s", error)
        return APIError(502, "kubernetes_error", f"the cluster refused the request ({error.status} {error.reason})"
                        ).response()

    def authenticated(request: Request) -> Person:
        token = bearer_token(request.headers.get("authorization"))
        person = index.authenticate(token)
        if token is None or person is None:
            audit.auth_failure(request, "no_token" if token is None else "unknown_token")
            raise unauthenticated()
        request.state.token_sha256 = hash_token(token)
        return person

    async def own_personalai(request: Request, person: Person = Depends(authenticated)) -> dict:
        """The token's PersonalAI as it is now; a token rotated since the index last heard counts as unknown."""
        try:
            personalai = await state["kube"].get_personalai(person.namespace, person.name)
        except KubeError as error:
            if error.status == 404:
                audit.auth_failure(request, "unknown_token")
                raise unauthenticated() from None
            raise
        if token_sha256(personalai) != request.state.token_sha256:
            audit.auth_failure(request, "unknown_token")  # rotated since the index last heard
            raise unauthenticated()
        audit.auth_success(request, person, request.state.token_sha256)
        return personalai

    async def latest(personalai: dict) -> dict | None:
        meta = personalai["metadata"]
        return latest_run((await state["kube"].trainingruns_of(meta["namespace"], meta["name"])).get("items", []))

    # ---- health and metrics -----------------------------------------------------------------

    def tokens_known() -> bool:
        """Every watched namespace's PersonalAIs listed once: until then a real token could get 401."""
        return set(settings.namespaces or [""]) <= index.synced

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "tokensKnown": tokens_known()}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        known = tokens_known()
        return JSONResponse({"status": "ready" if known else "listing PersonalAIs", "tokensKnown": known},
                            status_code=200 if known else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.known_tokens.set(len(index))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ---- the person, and their chat page -----------------------------------------------------------

    @app.get("/api/me")
    async def whose(personalai: dict = Depends(own_personalai)) -> dict:
        return me(personalai)

    app.include_router(page.router)

    # ---- training -----------------------------------------------------------------------------

    @app.get("/api/training/start-personal-ai")
    async def get_readiness(personalai: dict = Depends(own_personalai)) -> dict:
        return readiness(personalai)

    @app.post("/api/training/start-personal-ai")
    async def start(request: Request, person: Person = Depends(authenticated),
                    personalai: dict = Depends(own_personalai)) -> dict:
        raw = await read_body(request, settings.max_request_bytes)
        try:
            body = StartRequest.model_validate(json.loads(raw) if raw.strip() else {})
        except ValueError as error:
            raise _invalid(error) from None
        own_user_id(body.model_dump(exclude_none=True), person, request)
        spec = personalai.get("spec") or {}
        changes = training_changes(body.config)
        knobs = body.config.model_dump(by_alias=True, exclude_none=True)
        try:
            merged_training(spec.get("training") or {}, changes)
        except ConfigError as error:
            audit.training_start(request, person, knobs, "failure", "invalid_config")
            raise APIError(422, "invalid_field", str(error), error.field) from None
        if not data_ready(personalai):
            audit.training_start(request, person, knobs, "failure", "data_not_ready")
            assessment = (personalai.get("status") or {}).get("dataAssessment") or {}
            raise APIError(409, "data_not_ready", "The reflections are not ready to train on: "
                           + (assessment.get("message") or "they have not been assessed yet."))
        patched = await state["kube"].patch_personalai_spec(person.namespace, person.name,
                                                            {"suspend": False, "training": changes})
        audit.training_start(request, person, knobs)
        spec = patched.get("spec") or {}
        assessment = (patched.get("status") or {}).get("dataAssessment") or {}
        guess = estimates.estimate(assessment, spec.get("training") or {}, settings.throughput, settings.gpu_class,
                                   datetime.now(UTC))
        return {
            "message": f"Training started for {spec.get('displayName', person.name)}'s PersonalAI.",
            "userId": person.name,
            "trainingData": {
                "totalResponses": assessment.get("responses", 0),
                "totalWords": assessment.get("totalWords", 0),
                "estimatedTokens": guess.tokens,
                "estimatedTrainingTime": estimates.duration_words(guess.seconds),
                "estimatedTrainingSeconds": guess.seconds,
                "estimatedCompletion": guess.completion.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "estimateBasis": guess.basis,
            },
            "config": answer_config(spec),
        }

    @app.get("/api/training/status")
    async def status(personalai: dict = Depends(own_personalai)) -> dict:
        return training_status(personalai, await latest(personalai))

    @app.get("/api/training/metrics")
    async def training_metrics(request: Request, stream: bool = False, person: Person = Depends(authenticated),
                               personalai: dict = Depends(own_personalai)) -> Response:
        if not stream:
            run = await latest(personalai)
            return JSONResponse(progress_event(run) if run else training_status(personalai, None))
        if not slots.take(person):
            raise APIError(429, "too_many_streams", f"at most {slots.per_person} metrics streams at once per person")
        metrics.open_streams.labels(kind="metrics").inc()

        def closed() -> None:
            slots.give_back(person)
            metrics.open_streams.labels(kind="metrics").dec()

        frames = run_events(state["kube"], person, settings.stream_max_seconds, settings.heartbeat_seconds)
        return ClosingStream(frames, [closed], media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)

    # ---- chat, passed through ---------------------------------------------------------------------

    @app.api_route("/api/ai-echo/{path:path}", methods=CHAT_METHODS)
    async def chat(path: str, request: Request, person: Person = Depends(authenticated),
                   personalai: dict = Depends(own_personalai)) -> Response:
        body = await read_body(request, settings.max_request_bytes)
        if "json" in request.headers.get("content-type", "") and body.strip():
            with contextlib.suppress(ValueError):
                decoded = json.loads(body)
                if isinstance(decoded, dict):
                    own_user_id(decoded, person, request)
        endpoint = await state["kube"].ready_endpoint(person.namespace, chat_server_name(person.name))
        if endpoint is None:
            raise APIError(503, "no_chat_server", "Your PersonalAI has no chat server ready yet: it serves once a "
                           "trained adapter has passed validation (GET /api/training/status).",
                           headers={"Retry-After": "30"})
        try:
            response = await forward(state["chat"], request, body, f"http://{endpoint}", path)
        except httpx.TimeoutException:
            raise APIError(504, "chat_server_timeout", "your chat server did not answer in time") from None
        except httpx.TransportError:
            raise APIError(502, "chat_server_unreachable", "your chat server could not be reached") from None
        audit.chat_session(request, person, path, response.status_code)
        if SSE_MEDIA_TYPE in response.headers.get("content-type", ""):
            metrics.open_streams.labels(kind="chat").inc()
            response.on_close.append(metrics.open_streams.labels(kind="chat").dec)
        return response

    @app.websocket("/api/ai-echo/ws")
    async def chat_socket(websocket: WebSocket) -> None:
        """The chat server's WebSocket, relayed (websocket.py): the token in a header, or in a first frame."""
        token = bearer_token(websocket.headers.get("authorization"))
        if token is None:
            await websocket.accept()
            token = await sockets.first_frame_token(websocket)
        person = index.authenticate(token)
        personalai = None
        if person is not None:
            with contextlib.suppress(KubeError):
                personalai = await state["kube"].get_personalai(person.namespace, person.name)
        if token is None or person is None or personalai is None or token_sha256(personalai) != hash_token(token):
            audit.auth_failure(websocket, "no_token" if token is None else "unknown_token")
            if websocket.application_state == WebSocketState.CONNECTING:
                await websocket.close()  # before accept: the handshake gets 403
            else:
                await sockets.refuse(websocket, sockets.CLOSE_UNAUTHORIZED, "unauthenticated",
                                     "send Authorization: Bearer <token>, or first {\"type\": \"auth\", \"token\"}")
            return
        audit.auth_success(websocket, person, hash_token(token))
        if websocket.application_state == WebSocketState.CONNECTING:
            await websocket.accept()
        endpoint = await state["kube"].ready_endpoint(person.namespace, chat_server_name(person.name))
        if endpoint is None:
            await sockets.refuse(websocket, sockets.CLOSE_TRY_LATER, "no_chat_server",
                                 "Your PersonalAI has no chat server ready yet (GET /api/training/status).")
            return
        metrics.open_streams.labels(kind="websocket").inc()
        try:
            await sockets.relay(websocket, f"ws://{endpoint}/api/ai-echo/ws", token, socket_limits)
        finally:
            metrics.open_streams.labels(kind="websocket").dec()

    app.add_middleware(CountRequests, metrics=metrics)
    app.state.index = index
    app.state.audit = audit
    return app


def _invalid(error: ValueError) -> APIError:
    """A malformed or invalid start body as a 400/422 naming the field (never the value sent)."""
    if not isinstance(error, ValidationError):
        return APIError(400, "malformed_json", "request body is not valid JSON", "body")
    first = error.errors()[0]
    # config.<knob> or a top-level key; deeper parts name union members (float, int), not fields.
    location = first["loc"][:2] if first["loc"][:1] == ("config",) else first["loc"][:1]
    field = ".".join(str(part) for part in location) or "body"
    return APIError(422, "invalid_field", f"{field}: {first['msg']}", field)
