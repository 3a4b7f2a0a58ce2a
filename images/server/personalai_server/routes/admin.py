"""/admin: what the operator asks of this server, under the person's token.

POST /admin/forget, at erasure, before the operator deletes this server: the remote engine (vLLM)
unloads every adapter of this PersonalAI it may hold, and none is loaded again. Not rate-limited:
an erasure is never told to wait.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..auth import Principal
from ..dependencies import authenticate, get_service
from ..engines.base import EngineError
from ..errors import APIError
from ..schemas import error_responses
from ..service import ChatService

router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses(401, 502))


class Forgotten(BaseModel):
    engine: str
    unloaded: int  # adapters the remote engine unloaded (0: it held none, or cannot unload: tgi, local)


@router.post("/forget", response_model=Forgotten)
async def forget(principal: Principal = Depends(authenticate), service: ChatService = Depends(get_service)) -> Forgotten:
    engine = service.engine
    try:
        unloaded = await engine.forget_remote_adapters()
    except EngineError as error:
        service.audit.record("adapters.forget", "failure", owner=principal.short_id, reason="engine_error")
        raise APIError(502, "engine_error", str(error)) from None
    service.audit.record("adapters.forget", owner=principal.short_id, count=unloaded)
    service.metrics.observe_adapters(engine.loaded_adapters(), engine.active_adapter)
    return Forgotten(engine=engine.kind, unloaded=unloaded)
