"""Request and response bodies of the HTTP API (camelCase on the wire, as in the product brief).

These models are what FastAPI's OpenAPI document at /openapi.json describes. Length limits that
depend on config (message length, maxTokens) are checked by the service, so errors can name them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Bounds of the numeric fields every protocol shares: a seed is an int64 (what the engines take; a
# larger one is a 422 naming the field, not an engine failure); a token count fits an int32 (the
# server's own limits.maxTokens, checked by the service, is far below).
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
TOKENS_MAX = 2**31 - 1


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SessionSettings(_Camel):
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=TOKENS_MAX)
    personality_mode: str | None = Field(default=None, min_length=1, max_length=64)
    enable_emotional_tone: bool = False
    # False: no memories in this session's prompts (for comparing answers with and without them).
    memory: bool = True


class SessionCreate(_Camel):
    title: str = Field(default="New conversation", max_length=200)
    settings: SessionSettings = Field(default_factory=SessionSettings)


class SessionUpdate(_Camel):
    title: str | None = Field(default=None, max_length=200)
    settings: SessionSettings | None = None


class MessageOut(_Camel):
    role: Literal["user", "assistant"]
    content: str
    timestamp: float
    metadata: dict[str, Any] | None = None
    message_id: int | None = None
    rating: Literal["up", "down"] | None = None  # the person's rating of this reply, if any


class SessionOut(_Camel):
    session_id: str
    title: str
    settings: SessionSettings
    created_at: float
    updated_at: float
    message_count: int


class SessionDetail(SessionOut):
    messages: list[MessageOut]


class SessionList(_Camel):
    sessions: list[SessionOut]


class ChatRequest(_Camel):
    message: str = Field(min_length=1)
    # Absent: a new session with default settings is made, and its id comes back.
    session_id: str | None = Field(default=None, max_length=64)


class TokenUsage(_Camel):
    prompt: int
    completion: int
    total: int


class Timing(_Camel):
    time_to_first_token_ms: float | None
    total_ms: float
    tokens_per_second: float


class ResponseMetadata(_Camel):
    tokens: TokenUsage
    timing: Timing
    adapter_version: str | None
    model: str
    engine: str
    personality_mode: str
    history_messages: int
    finish_reason: str | None
    confidence: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Mean probability the model gave each token of the reply (softmax at temperature 1), rounded to "
        "3 places: how sure it was of its own words, not a measure of truth. null with the tgi and vllm "
        "engines, which do not return token probabilities here."))
    # Ids of the memories put into the prompt, best first; never their text.
    memories: list[str] = Field(default_factory=list)
    # The A/B variant of the session; variantFallback: its assigned version is no longer served.
    variant: Literal["current", "candidate"] = "current"
    variant_fallback: bool | None = None


class ChatResponse(_Camel):
    response: str
    session_id: str
    metadata: ResponseMetadata
    message_id: int | None = None  # of the stored reply: what the rating route takes


class RatingRequest(_Camel):
    rating: Literal["up", "down"]
    note: str | None = Field(default=None, max_length=500)


class RatingOut(_Camel):
    session_id: str
    message_id: int
    rating: Literal["up", "down"]
    adapter_version: str | None


class VersionStats(_Camel):
    sessions: int
    replies: int
    errors: int
    ratings_up: int
    ratings_down: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None


class CandidateOut(_Camel):
    version: str
    share: int


class StatsOut(_Camel):
    versions: dict[str, VersionStats]
    candidate: CandidateOut | None


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# What each error status means on this API; each router documents the ones its routes can answer,
# so a client (and the schemathesis fuzz) knows every status it may get.
ERROR_STATUSES = {
    400: "Malformed JSON, or (/v1/load_lora_adapter) an adapter name already given to another folder",
    401: "No valid bearer token",
    404: "No such session, model or adapter for this token",
    413: "Body over limits.maxRequestBytes, or a message over limits.maxMessageChars or the context",
    422: "An invalid field, named in error.field",
    429: "A rate, stream, session or connection limit reached (see Retry-After)",
    501: "Not served with this engine",
    502: "The engine failed",
    503: "The model is loading, the adapter is unavailable, or the server is shutting down",
    504: "The generation ran past engine.generationTimeoutSeconds",
}
# Every route with a JSON body under the token and the rate limit may answer these.
REQUEST_ERRORS = (400, 401, 413, 422, 429)
# ... and a route that generates, these too.
GENERATION_ERRORS = (*REQUEST_ERRORS, 502, 503, 504)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` documenting `statuses` with the one error body."""
    return {status: {"model": ErrorResponse, "description": ERROR_STATUSES[status]} for status in statuses}


class Health(BaseModel):
    status: str
    engine: str | None = None
    adapterVersion: str | None = None
    loadedAdapters: list[str] | None = None
    # Why the model is not being served, once it is known not to be (names versions, never contents).
    reason: str | None = None
