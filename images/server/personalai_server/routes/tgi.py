"""Text Generation Inference's protocol, backed by the local engine: /generate, /generate_stream.

Lets another personalai server (engine.kind "tgi") or any `text-generation` client use this one as
its TGI; `parameters.adapter_id` names an adapter version under adapter.dir (loaded on first use,
after its manifest check), as TGI's multi-LoRA does. The prompt is raw text, already templated (so
limits.maxMessageChars, a limit on one person's message, does not apply; limits.maxTokens, the
rate and stream limits do, and the prompt with its max_new_tokens must fit the model's context).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..auth import Principal
from ..dependencies import authorize, get_service
from ..engines import AdapterError, Engine, GenerationParams, GenerationStats
from ..engines.base import BASE_MODEL
from ..errors import APIError
from ..schemas import GENERATION_ERRORS, SEED_MAX, TOKENS_MAX, error_responses
from ..service import ChatService
from ..sse import SSE_MEDIA_TYPE
from ..streaming import event_stream, unless_disconnected

router = APIRouter(tags=["tgi"], responses=error_responses(*GENERATION_ERRORS, 501))

TokenEvents = Callable[[], AsyncIterator[dict[str, Any]]]


class TGIParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_new_tokens: int = Field(default=20, ge=1, le=TOKENS_MAX)
    do_sample: bool = False
    temperature: float | None = Field(default=None, gt=0.0, le=100.0)
    top_p: float | None = Field(default=None, gt=0.0, lt=1.0)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    adapter_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    details: bool = False


class TGIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str = Field(min_length=1)
    parameters: TGIParameters = Field(default_factory=TGIParameters)
    stream: bool = False


class TGIToken(BaseModel):
    id: int
    text: str
    logprob: float | None = None
    special: bool


class TGIDetails(BaseModel):
    finish_reason: str
    generated_tokens: int
    seed: int | None = None
    prefill: list[dict[str, Any]] = []
    tokens: list[TGIToken] = []


class TGIResponse(BaseModel):
    generated_text: str
    details: TGIDetails | None = None


def tgi_params(service: ChatService, parameters: TGIParameters) -> GenerationParams:
    sampling = parameters.do_sample or parameters.temperature is not None or parameters.top_p is not None
    return GenerationParams(
        max_tokens=service.cap_max_tokens(parameters.max_new_tokens, "parameters.max_new_tokens"),
        temperature=(parameters.temperature or 1.0) if sampling else 0.0,
        top_p=parameters.top_p or 1.0,
        # TGI without adapter_id answers with the base model.
        adapter=parameters.adapter_id or BASE_MODEL,
        seed=parameters.seed,
    )


def token_engine(service: ChatService) -> Engine:
    if not service.engine.streams_token_ids:
        raise APIError(501, "not_supported", "the TGI protocol is served only with engine.kind local", None)
    service.require_ready()
    return service.engine


async def load_requested_adapter(engine: Engine, params: GenerationParams) -> None:
    """Load adapter_id before the response starts, so a bad one is a plain 422."""
    if params.adapter:
        try:
            await engine.ensure_adapter(params.adapter)
        except AdapterError as error:
            raise APIError(422, "adapter_not_found", str(error), "parameters.adapter_id") from None


async def prepare(service: ChatService, request: TGIRequest) -> TokenEvents:
    """Every refusal before a byte is sent; then, called with a stream slot held, the token events."""
    engine = token_engine(service)
    params = tgi_params(service, request.parameters)
    await load_requested_adapter(engine, params)
    prompt_ids = engine.tokenizer.encode_prompt(request.inputs)
    # A raw prompt is sent whole: it cannot be trimmed, and max_new_tokens is always the caller's.
    service.check_context(len(prompt_ids), params.max_tokens, "inputs", requested=True)
    return lambda: token_events(service, engine, prompt_ids, params)


async def token_events(service: ChatService, engine: Engine, prompt_ids: list[int], params: GenerationParams):
    """TGI stream events: one per token; the last carries generated_text and details."""
    stats = GenerationStats()
    pending: dict[str, Any] | None = None
    pieces: list[str] = []
    index = 0
    async with contextlib.aclosing(service.generation(engine.stream_ids(prompt_ids, params, stats), stats)) as tokens:
        async for token_id, text in tokens:
            pieces.append(text)
            if token_id is None:
                # Text the engine held back to the end (cut mid-character) rides on the last token.
                pending["token"]["text"] += text
                continue
            if pending is not None:
                yield pending
            pending = {"index": index, "token": {"id": token_id, "text": text, "logprob": None, "special": False},
                       "generated_text": None, "details": None}
            index += 1
    finish = stats.finish_reason or "length"
    if finish == "eos_token" or pending is None:
        eos_id = next(iter(engine.tokenizer.eos_ids), 0)
        if pending is not None:
            yield pending
        pending = {"index": stats.completion_tokens, "token": {"id": eos_id, "text": "", "logprob": None, "special": True}}
    pending["generated_text"] = "".join(pieces)
    pending["details"] = {"finish_reason": finish, "generated_tokens": stats.completion_tokens, "seed": params.seed}
    yield pending


def error_event(error: APIError) -> dict[str, Any]:
    return {"error": error.message, "error_type": error.code}


@router.post("/generate", response_model=TGIResponse)
async def generate(request: TGIRequest, http: Request, principal: Principal = Depends(authorize),
                   service: ChatService = Depends(get_service)):
    events = await prepare(service, request)

    async def collect() -> list[dict[str, Any]]:
        async with service.stream_slot(principal):
            return [event async for event in events()]

    collected = await unless_disconnected(http, collect())
    last = collected[-1]
    tokens = [TGIToken(**event["token"]) for event in collected if not event["token"]["special"]]
    details = TGIDetails(**last["details"], tokens=tokens) if request.parameters.details else None
    return TGIResponse(generated_text=last["generated_text"], details=details)


@router.post("/generate_stream", response_class=StreamingResponse,
             responses={200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "TGI token events"}})
async def generate_stream(request: TGIRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)):
    events = await prepare(service, request)
    return await event_stream(service.stream_slot(principal), lambda _: events(), error_event)
