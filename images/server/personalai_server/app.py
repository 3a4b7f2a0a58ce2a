"""Assemble the FastAPI app: config, token store, session store, engine, routes, background tasks.

    app = build_app(config, config_path="/etc/personalai/server.yaml")

The engine loads in the background (ChatService.start_engine) so /healthz answers at once and
/readyz turns 200 when the model is in memory; the active adapter's memory index (and the embedder,
if it has one) follows.
`engine` may be passed in (the benchmark uses this to time the server alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from .audit import AuditLog
from .auth import TokenStore
from .config import ServerConfig
from .engines import Engine, build_engine
from .errors import install_error_handlers
from .metrics import ServerMetrics
from .middleware import RequestMetrics, RequestSizeLimit
from .reloader import purge_expired, watch_config
from .routes import admin, chat, health, openai, sessions, tgi
from .service import ChatService
from .storage import SessionStore

log = logging.getLogger(__name__)


def build_app(config: ServerConfig, config_path: str | None = None, engine: Engine | None = None) -> FastAPI:
    tokens = TokenStore.from_dir(config.auth.tokens_dir)
    metrics_dir = config.auth.metrics_tokens_dir
    metrics_tokens = TokenStore.from_dir(metrics_dir, "auth.metricsTokensDir") if metrics_dir else TokenStore(set())
    store = SessionStore(config.storage.data_dir)
    engine = engine or build_engine(config)
    metrics = ServerMetrics()
    audit = AuditLog(config.audit, config.persona.personal_ai)
    service = ChatService(config, store, engine, metrics, audit=audit)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        purge_expired(service)
        tasks = [asyncio.create_task(service.start_engine()), asyncio.create_task(watch_config(service, config_path))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.close()
            service.memories.close()
            store.close()
            audit.close()

    app = FastAPI(
        title="personalai server",
        version="0.1.0",
        description=f"Chat with {config.persona.display_name}'s PersonalAI. Send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        # The API document is served under the token (routes/health.py), not to anyone who asks.
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.service = service
    app.state.tokens = tokens
    app.state.metrics_tokens = metrics_tokens  # GET /metrics only (routes/health.py)
    install_error_handlers(app)
    for module in (health, sessions, chat, openai, tgi, admin):
        app.include_router(module.router)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestSizeLimit, max_bytes_of=lambda: service.config.limits.max_request_bytes)
    if len(tokens) == 0:
        log.warning("no tokens in auth.tokensDir: every API request will get 401")
    return app
