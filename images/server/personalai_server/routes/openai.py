"""An OpenAI-compatible API: /v1/chat/completions (streaming or not), /v1/models, and vLLM's
/v1/load_lora_adapter and /v1/unload_lora_adapter.

Stateless: the caller sends the whole conversation. `model` picks what answers, as in vLLM: the
PersonalAI's name (or omitted) is the active adapter, an adapter version that is loaded is that
adapter, the base model's name is the base model alone. Without a system message, the default
personality mode's prompt is used, with the adapter's memories closest to the last user message
(a caller's own system message is left as sent; the base model has no memory).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from personalai_contracts.paths import resolve

from ..auth import Principal
from ..config import memory_settings
from ..dependencies import authorize, get_service
from ..engines import AdapterError, GenerationParams, GenerationStats
from ..engines.base import BASE_MODEL
from ..errors import APIError
from ..prompts import PromptTooLongError, build_system_prompt, resolve_sampling, trim_to_context
from ..schemas import GENERATION_ERRORS, SEED_MAX, SEED_MIN, TOKENS_MAX, error_responses
from ..service import ChatService
from ..sse import DONE, SSE_MEDIA_TYPE
from ..streaming import event_stream, unless_disconnected

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(*GENERATION_ERRORS, 404))

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
    # OpenAI clients send many optional fields; the ones not listed here are ignored. The example is
    # in the API document, so the fuzz (and a reader) starts from a request that is answered.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"messages": [{"role": "user", "content": "How was the lake this summer?"}], "max_tokens": 16},
    ]})
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=TOKENS_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=TOKENS_MAX)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
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
    cards += [ModelCard(id=name, created=now, root=version, parent=base) for name, version in service.lora_names.items()
              if version in engine.loaded_adapters()]
    return ModelList(data=cards)


def pick_adapter(service: ChatService, model: str | None) -> str | None:
    """GenerationParams.adapter for an OpenAI `model` value; 404 naming the field when unknown."""
    if model in (None, "", service.config.persona.personal_ai):
        return None
    if model == service.engine.model_name:
        return BASE_MODEL
    if model in service.engine.loaded_adapters():
        return model
    if service.lora_names.get(model) in service.engine.loaded_adapters():
        return service.lora_names[model]
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


def requested_max_tokens(request: CompletionRequest) -> tuple[int | None, str | None]:
    """(the caller's cap on the reply, the field it came in); max_completion_tokens wins, as in OpenAI."""
    if request.max_completion_tokens is not None:
        return request.max_completion_tokens, "max_completion_tokens"
    if request.max_tokens is not None:
        return request.max_tokens, "max_tokens"
    return None, None


def completion_params(service: ChatService, request: CompletionRequest) -> GenerationParams:
    """The caller's sampling where it sent some, else the default mode's, as a session's turn has it."""
    conversation = service.config.conversation
    mode = conversation.personality_modes[conversation.default_mode]
    max_tokens, field_name = requested_max_tokens(request)
    sampling = resolve_sampling(mode, conversation, request.temperature, max_tokens)
    return GenerationParams(
        max_tokens=service.cap_max_tokens(sampling.max_tokens, field_name),
        temperature=sampling.temperature,
        top_p=request.top_p if request.top_p is not None else sampling.top_p,
        adapter=pick_adapter(service, request.model),
        seed=request.seed,
    )


@dataclass
class Completion:
    """One completion's identity and what the engine reports while it generates."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    stats: GenerationStats = field(default_factory=GenerationStats)

    def chunk(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**self.chunk_head(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def chunk_head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


async def completion_chunks(completion: Completion, pieces: AsyncIterator[str], include_usage: bool) -> AsyncIterator[Any]:
    """OpenAI's stream: a role chunk, a chunk per piece, the finish chunk, usage if asked, [DONE]."""
    yield completion.chunk({"role": "assistant", "content": ""}, None)
    async for piece in pieces:
        yield completion.chunk({"content": piece}, None)
    yield completion.chunk({}, openai_finish(completion.stats))
    if include_usage:
        yield {**completion.chunk_head(), "choices": [], "usage": usage(completion.stats).model_dump()}
    yield DONE


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "A completion, or chunks when stream is true"}},
)
async def chat_completions(
    request: CompletionRequest, http: Request, principal: Principal = Depends(authorize),
    service: ChatService = Depends(get_service),
):
    service.require_ready()
    params = completion_params(service, request)
    messages = await build_openai_messages(service, request, params)
    max_tokens = service.check_context(service.engine.count_tokens(messages), params.max_tokens, "messages",
                                       requested=requested_max_tokens(request)[1] is not None)
    params = dataclasses.replace(params, max_tokens=max_tokens)
    completion = Completion(request.model or service.config.persona.personal_ai)
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return await event_stream(
            service.stream_slot(principal),
            lambda _: completion_chunks(completion, service.reply(messages, params, completion.stats), include_usage),
            APIError.body,
        )

    async def answer() -> str:
        async with service.stream_slot(principal):
            return "".join([piece async for piece in service.reply(messages, params, completion.stats)])

    text = await unless_disconnected(http, answer())
    return ChatCompletion(
        id=completion.id, created=completion.created, model=completion.model,
        choices=[CompletionChoice(index=0, message=CompletionMessage(content=text),
                                  finish_reason=openai_finish(completion.stats))],
        usage=usage(completion.stats),
    )


def openai_finish(stats: GenerationStats) -> str | None:
    return {"eos_token": "stop", "stop": "stop", "length": "length"}.get(stats.finish_reason or "", stats.finish_reason)


def usage(stats: GenerationStats) -> Usage:
    return Usage(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                 total_tokens=stats.prompt_tokens + stats.completion_tokens)


@router.post("/load_lora_adapter", response_class=PlainTextResponse)
async def load_lora_adapter(
    body: LoraAdapterRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
) -> str:
    """vLLM's runtime LoRA loading; only adapters under this server's adapter.dir can be named.

    As in vLLM, `lora_name` is the caller's name for the folder `lora_path` (here: a version folder of
    adapter.dir); without a path the name is the version itself. A name already given to another
    folder is refused (400), as vLLM refuses it."""
    version = body.lora_name
    if body.lora_path is not None:
        try:
            folder: Path | None = Path(body.lora_path).resolve()
        except (OSError, ValueError):  # a NUL byte, a loop of links
            folder = None
        if folder is None or folder.parent != resolve(service.config.adapter.dir).resolve():
            raise APIError(422, "invalid_field", "lora_path must be a version folder in adapter.dir of this server",
                           "lora_path")
        version = folder.name
    if service.lora_names.get(body.lora_name, version) != version:
        raise APIError(400, "invalid_field", f"the lora adapter '{body.lora_name}' has already been loaded",
                       "lora_name")
    service.require_ready()
    try:
        await service.engine.ensure_adapter(version)
    except AdapterError as error:
        raise APIError(404, "adapter_not_found", str(error), "lora_name") from None
    if body.lora_name != version:
        service.lora_names[body.lora_name] = version
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    return f"Success: LoRA adapter '{body.lora_name}' added successfully."


@router.post("/unload_lora_adapter", response_class=PlainTextResponse)
async def unload_lora_adapter(
    body: LoraAdapterRequest, principal: Principal = Depends(authorize), service: ChatService = Depends(get_service)
) -> str:
    version = service.lora_names.get(body.lora_name, body.lora_name)
    if not await service.engine.unload_adapter(version):
        raise APIError(404, "adapter_not_found", "adapter is not loaded, or is the active one", "lora_name")
    service.lora_names = {name: held for name, held in service.lora_names.items() if held != version}
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."
