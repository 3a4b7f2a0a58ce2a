"""An OpenAI-compatible API: /v1/chat/completions (streaming or not), /v1/models, and vLLM's
/v1/load_lora_adapter and /v1/unload_lora_adapter.

Stateless: the caller sends the whole conversation. `model` picks what answers, as in vLLM: the
PersonalAI's name (or omitted) is the active adapter, an adapter version that is loaded is that
adapter, the base model's name is the base model alone. Without a system message, the default
personality mode's prompt is used, with the adapter's memories closest to the last user message
(a caller's own system message is left as sent; the base model has no memory).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from ..auth import Principal
from ..config import memory_settings
from ..dependencies import authorize, get_service
from ..engines import GenerationParams, GenerationStats
from ..engines.base import BASE_MODEL
from ..errors import APIError
from ..prompts import PromptTooLongError, build_system_prompt, trim_to_context
from ..schemas import ErrorResponse
from ..service import ChatService
from ..sse import SSE_HEADERS, SSE_MEDIA_TYPE, format_done, format_event

ERRORS = {
    400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
    413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
}

router = APIRouter(prefix="/v1", tags=["openai"], responses=ERRORS)

MAX_MESSAGES = 200


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # OpenAI clients send many optional fields; the ones not listed here are ignored.
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    finish_reason: str | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "personalai"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class LoraAdapterRequest(BaseModel):
    lora_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    lora_path: str | None = None


@router.get("/models", response_model=ModelList)
async def list_models(principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)) -> ModelList:
    now = int(time.time())
    engine = service.engine
    base = engine.model_name
    cards = [
        ModelCard(id=service.config.persona.personal_ai, created=now, root=base, parent=base),
        ModelCard(id=base, created=now, root=base),
    ]
    cards += [ModelCard(id=version, created=now, root=version, parent=base) for version in engine.loaded_adapters()]
    return ModelList(data=cards)


def pick_adapter(service: ChatService, model: str | None) -> str | None:
    """GenerationParams.adapter for an OpenAI `model` value; 404 naming the field when unknown."""
    if model in (None, "", service.config.persona.personal_ai):
        return None
    if model == service.engine.model_name:
        return BASE_MODEL
    if model in service.engine.loaded_adapters():
        return model
    raise APIError(404, "model_not_found", "model is not served here; see /v1/models", "model")


async def build_openai_messages(service: ChatService, request: CompletionRequest, params: GenerationParams) -> list[dict[str, str]]:
    messages = []
    for index, message in enumerate(request.messages):
        service.check_message(message.text(), f"messages[{index}].content")
        messages.append({"role": message.role, "content": message.text()})
    caller_system = messages.pop(0) if messages[0]["role"] == "system" else None
    if not messages or messages[-1]["role"] != "user":
        raise APIError(422, "invalid_field", "messages must end with a user message", "messages")
    history, new_turn = messages[:-1], messages[-1]
    if caller_system is not None:
        return fit_openai(service, caller_system["content"], history, new_turn, params.max_tokens)
    conversation = service.config.conversation
    mode = conversation.personality_modes[conversation.default_mode]
    system_prompt = build_system_prompt(mode, service.config.persona.display_name, False, conversation)
    messages, _recall = await service.grounded_messages(
        service.engine.pick_adapter(params), system_prompt, memory_settings(conversation, mode), history,
        new_turn["content"], lambda prompt: fit_openai(service, prompt, history, new_turn, params.max_tokens),
    )
    return messages


def fit_openai(service: ChatService, system_prompt: str, history: list, new_turn: dict, reserve: int) -> list[dict[str, str]]:
    engine = service.engine
    try:
        return trim_to_context({"role": "system", "content": system_prompt}, history, new_turn, engine.count_tokens,
                               engine.context_length, min(reserve, engine.context_length // 2))
    except PromptTooLongError:
        raise APIError(413, "message_too_long", "the last message does not fit the model's context", "messages") from None


def completion_params(service: ChatService, request: CompletionRequest) -> GenerationParams:
    conversation = service.config.conversation
    mode = conversation.personality_modes[conversation.default_mode]
    max_tokens = request.max_completion_tokens or request.max_tokens or conversation.max_tokens
    if max_tokens > service.config.limits.max_tokens:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise APIError(422, "max_tokens_too_large", f"{field} must be at most {service.config.limits.max_tokens}", field)
    temperature = request.temperature
    if temperature is None:
        temperature = mode.temperature if mode.temperature is not None else conversation.default_temperature
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=request.top_p if request.top_p is not None else mode.top_p,
        adapter=pick_adapter(service, request.model),
        seed=request.seed,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "A completion, or chunks when stream is true"}},
)
async def chat_completions(
    request: CompletionRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
):
    service.require_ready()
    params = completion_params(service, request)
    messages = await build_openai_messages(service, request, params)
    stats = GenerationStats()
    release = service.take_stream_slot(principal)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = request.model or service.config.persona.personal_ai
    reply = service.stream_reply(messages, params, stats, release)
    if not request.stream:
        try:
            text = "".join([piece async for piece in reply])
        finally:
            release()
        return ChatCompletion(
            id=completion_id, created=created, model=model,
            choices=[CompletionChoice(index=0, message=CompletionMessage(content=text), finish_reason=openai_finish(stats))],
            usage=usage(stats),
        )

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def lines():
        yield format_event(chunk({"role": "assistant", "content": ""}, None))
        try:
            async with contextlib.aclosing(reply) as pieces:
                async for piece in pieces:
                    yield format_event(chunk({"content": piece}, None))
        except APIError as error:
            yield format_event(error.body())
            return
        yield format_event(chunk({}, openai_finish(stats)))
        if request.stream_options and request.stream_options.include_usage:
            yield format_event({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": model, "choices": [], "usage": usage(stats).model_dump()})
        yield format_done()

    body = lines()

    async def finish() -> None:
        await body.aclose()
        await reply.aclose()
        release()

    return StreamingResponse(body, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS, background=BackgroundTask(finish))


def openai_finish(stats: GenerationStats) -> str | None:
    return {"eos_token": "stop", "stop": "stop", "length": "length"}.get(stats.finish_reason or "", stats.finish_reason)


def usage(stats: GenerationStats) -> Usage:
    return Usage(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                 total_tokens=stats.prompt_tokens + stats.completion_tokens)


@router.post("/load_lora_adapter", response_class=PlainTextResponse)
async def load_lora_adapter(
    body: LoraAdapterRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
) -> str:
    """vLLM's runtime LoRA loading; only adapters under this server's adapter.dir can be named."""
    expected = service.config.adapter.path_for(body.lora_name)
    if body.lora_path is not None and Path(body.lora_path).resolve() != expected.resolve():
        raise APIError(422, "invalid_field", "lora_path must be adapter.dir/<lora_name> of this server", "lora_path")
    service.require_ready()
    from ..engines import AdapterError

    try:
        await service.engine.ensure_adapter(body.lora_name)
    except AdapterError as error:
        raise APIError(404, "adapter_not_found", str(error), "lora_name") from None
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    return f"Success: LoRA adapter '{body.lora_name}' added successfully."


@router.post("/unload_lora_adapter", response_class=PlainTextResponse)
async def unload_lora_adapter(
    body: LoraAdapterRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
) -> str:
    if not await service.engine.unload_adapter(body.lora_name):
        raise APIError(404, "adapter_not_found", "adapter is not loaded, or is the active one", "lora_name")
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."
