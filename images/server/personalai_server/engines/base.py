"""The one interface every engine offers the API, and the types that cross it.

An engine turns chat messages into a stream of text pieces for one adapter version (or the base
model), counts tokens the way its model does, and loads adapter versions on request. Closing the
stream (the client went away) stops the generation at once.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .tokenizers import ChatTokenizer

Message = dict[str, str]


class EngineError(RuntimeError):
    """The engine could not generate (not loaded, remote down); the message holds no user text."""


class AdapterError(EngineError):
    """An adapter version is missing, fails its manifest check, or cannot be loaded."""


class GenerationTimeoutError(EngineError):
    """A generation ran past engine.generationTimeoutSeconds and was stopped."""


class UnknownAdapterError(AdapterError):
    """A request named an adapter this engine does not have."""


# GenerationParams.adapter value that asks for the base model alone, whatever adapter is active.
BASE_MODEL = ""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float
    top_p: float = 1.0
    # None: the engine's active adapter (the config's adapter.version); BASE_MODEL: no adapter.
    adapter: str | None = None
    seed: int | None = None


@dataclass
class GenerationStats:
    """Filled in by the engine while it streams; read by the API for metadata and metrics."""

    adapter_version: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None
    # Sum and count of the model's probabilities of the tokens it generated (engines that see logits).
    probability_sum: float = 0.0
    scored_tokens: int = 0

    def record_probability(self, probability: float) -> None:
        self.probability_sum += probability
        self.scored_tokens += 1

    @property
    def confidence(self) -> float | None:
        """The mean probability the model gave each token it generated (softmax at temperature 1, before
        top-p), in [0, 1], to 3 places: how sure it was of its own words, not whether they are true.
        None where the engine sees no token probabilities (tgi, vllm) or nothing was generated."""
        if self.scored_tokens == 0:
            return None
        return round(min(1.0, max(0.0, self.probability_sum / self.scored_tokens)), 3)

    def mark_token(self, count: int = 1) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.completion_tokens += count

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started_at

    @property
    def total_seconds(self) -> float:
        return (self.finished_at or time.perf_counter()) - self.started_at

    @property
    def tokens_per_second(self) -> float:
        if self.first_token_at is None or self.completion_tokens < 2:
            return 0.0
        decoding = (self.finished_at or time.perf_counter()) - self.first_token_at
        return (self.completion_tokens - 1) / decoding if decoding > 0 else 0.0


class Engine(abc.ABC):
    kind: str = "engine"
    # Whether the engine takes a raw prompt's token ids and streams token ids back (`stream_ids`):
    # what serving the TGI protocol needs. Only an in-process model can; a remote one streams text.
    streams_token_ids: bool = False

    def __init__(self) -> None:
        self.ready = False
        self.active_adapter: str | None = None
        self.tokenizer: ChatTokenizer | None = None
        # The manifest sha256 the operator recorded for an adapter version (adapter.manifestSha256 of
        # the version served): a version listed here is loaded only from a folder with that manifest.
        self.recorded_digests: dict[str, str] = {}

    @abc.abstractmethod
    async def start(self, adapter_version: str | None) -> None:
        """Load the model (or reach the remote engine) and the first adapter; then `ready` is True."""

    @abc.abstractmethod
    def stream(self, messages: list[Message], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        """Text pieces of the reply; closing the iterator stops the generation."""

    def stream_ids(
        self, prompt_ids: list[int], params: GenerationParams, stats: GenerationStats
    ) -> AsyncIterator[tuple[int | None, str]]:
        """(token id, new text) per generated token; offered where `streams_token_ids` is True."""
        raise EngineError(f"engine {self.kind} does not stream token ids")

    @abc.abstractmethod
    async def ensure_adapter(self, version: str) -> None:
        """Verify and load `version` if it is not loaded yet (least recently used ones make room)."""

    @abc.abstractmethod
    def loaded_adapters(self) -> list[str]:
        ...

    def pick_adapter(self, params: GenerationParams) -> str | None:
        """The adapter version a request runs with (None: the base model)."""
        if params.adapter is None:
            return self.active_adapter
        return params.adapter or None

    async def unload_adapter(self, version: str) -> bool:
        """Free `version` if loaded and not the active one; returns whether it was unloaded."""
        return False

    async def forget_remote_adapters(self) -> int:
        """At erasure: have the remote engine unload every adapter of this PersonalAI it may hold, and
        load none again; how many it unloaded. In-process adapters go with the process: 0."""
        return 0

    async def activate_adapter(self, version: str | None) -> None:
        """Make `version` (None: the base model) the one used when a request names none."""
        if version is not None:
            await self.ensure_adapter(version)
        self.active_adapter = version

    @property
    def context_length(self) -> int:
        return self.tokenizer.context_length if self.tokenizer else 4096

    def count_tokens(self, messages: list[Message]) -> int:
        if self.tokenizer is None:
            raise EngineError("engine is not loaded yet")
        return self.tokenizer.count(messages)

    @property
    def model_name(self) -> str:
        return "base"

    async def close(self) -> None:
        self.ready = False
