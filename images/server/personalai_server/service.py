"""The chat logic between the HTTP routes and the engine: sessions, turns, limits, metadata.

A turn is prepared (validated, a stream slot taken, history windowed and trimmed, the person's
memories closest to it put into the system prompt) before any byte of the response is sent, so every
refusal is a plain status code; then it is generated, and only a complete reply is stored, together
with its question. Every route, whatever its protocol, goes through the limits here: each limit is
checked in one method, with one error naming the request's own field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from personalai_contracts import memory
from personalai_contracts.artifacts import manifest_digest
from personalai_contracts.memory import MemorySettings, Recall

from .adapters import AdapterDigestError, check_digest
from .audit import AuditLog
from .auth import Principal
from .config import Adapter, ServerConfig, memory_settings
from .engines import Engine, EngineError, GenerationParams, GenerationStats
from .engines.base import BASE_MODEL, AdapterError, GenerationTimeoutError
from .errors import APIError
from .limits import RateLimiter, StreamSlots, retry_after_header
from .memory import NO_RECALL, Memories, MemoryIndex
from .metrics import ServerMetrics
from .prompts import PromptTooLongError, build_messages, build_system_prompt, resolve_sampling
from .schemas import SessionSettings
from .storage import BASE_VERSION, Assignment, SessionStore, StoredSession

log = logging.getLogger(__name__)

Piece = TypeVar("Piece")
ALL_SOCKETS = "*"  # no token owner (a sha256 in hex) is spelled so
LATENCY_SAMPLES = 1000  # the recent replies per version whose latency the stats route's percentiles cover


def pick_variant(session_id: str, share: int) -> str:
    """The A/B variant of a new session: the same for the same id, `share` percent "candidate"."""
    return "candidate" if int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) % 100 < share else "current"


def percentile(samples: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `samples` (None when there are none)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))], 2)


@dataclass
class VersionFigures:
    """What one adapter version did since this process started (the stats route adds stored counts)."""
    replies: int = 0
    errors: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def describe(self) -> dict[str, Any]:
        samples = list(self.latencies_ms)
        return {"replies": self.replies, "errors": self.errors,
                "latencyMsP50": percentile(samples, 0.5), "latencyMsP95": percentile(samples, 0.95)}


@dataclass
class Turn:
    principal: Principal
    session: StoredSession
    user_text: str
    messages: list[dict[str, str]]
    mode: str
    params: GenerationParams
    history_messages: int
    memories: list[str] = field(default_factory=list)  # ids of the memories in the prompt
    stats: GenerationStats = field(default_factory=GenerationStats)
    reply: str = ""
    metadata: dict[str, Any] | None = None
    variant: str = "current"
    # True when the session's stored version is no longer served and it got the current one instead.
    variant_fallback: bool = False
    message_id: int | None = None  # of the stored reply, once stored


class ChatService:
    def __init__(self, config: ServerConfig, store: SessionStore, engine: Engine, metrics: ServerMetrics,
                 memories: Memories | None = None, clock: Callable[[], float] = time.monotonic,
                 audit: AuditLog | None = None):
        self.clock = clock  # monotonic seconds; a test's own clock times failing and shutting down
        self.store = store
        self.engine = engine
        self.use_config(config)
        self.metrics = metrics
        self.memories = memories or Memories()
        self.audit = audit or AuditLog(config.audit, config.persona.personal_ai)
        self.rate_limiter = RateLimiter()
        self.stream_slots = StreamSlots()
        # Open WebSockets: by token owner, and all of them under ALL_SOCKETS.
        self.sockets = StreamSlots()
        # Why the engine is not serving, when it cannot start (readiness reports it; no personal data),
        # and since when (monotonic): liveness fails once that is longer than engine.unhealthyAfterSeconds.
        self.not_ready_reason: str | None = None
        self.failing_since: float | None = None
        # Set on SIGTERM (monotonic): replies still generating past it end with server_shutting_down.
        self.shutdown_deadline: float | None = None
        # vLLM-style names callers gave adapter versions with /v1/load_lora_adapter: name -> version.
        self.lora_names: dict[str, str] = {}
        self.version_figures: dict[str, VersionFigures] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    def use_config(self, config: ServerConfig) -> None:
        """`config` in force, for the engine too. An A/B candidate's recorded digest binds the engine
        now, before a session is served by it: the engine loads it only from a folder with that manifest."""
        self.config = config
        if hasattr(self.engine, "config"):
            self.engine.config = config
        candidate = config.candidate
        if candidate is not None and candidate.manifest_sha256 is not None:
            self.engine.recorded_digests[candidate.version] = candidate.manifest_sha256

    async def start_engine(self) -> None:
        """Load the model and the configured adapter. On failure the process stays up, not ready, with
        the reason (for /readyz) and the time (for /healthz); the reloader calls this again when the
        config changes, so a rollback recovers without deleting the pod."""
        try:
            await self.expect_adapter(self.config.adapter)
            await self.engine.start(self.config.adapter.version)
        except AdapterError as error:
            # A refused adapter is not replaced by another: serving the wrong person's model is worse than none.
            self.mark_failed(str(error))
            log.error("adapter not served: %s", error)
            self.audit_adapter_load(self.config.adapter, "start", error)
            return
        except Exception as error:
            self.mark_failed(f"engine failed to start ({type(error).__name__})")
            log.exception("engine failed to start")
            self.audit_adapter_load(self.config.adapter, "start", error)
            return
        self.not_ready_reason = self.failing_since = None
        self.audit_adapter_load(self.config.adapter, "start")
        self.metrics.observe_adapters(self.engine.loaded_adapters(), self.engine.active_adapter)
        log.info("model ready (engine %s, adapter %s)", self.engine.kind, self.engine.active_adapter)
        # There is no older adapter to fall back to: a broken memory index is logged and the model serves without.
        await self.memory_index(self.engine.active_adapter)

    def mark_failed(self, reason: str) -> None:
        self.not_ready_reason = reason
        if self.failing_since is None:
            self.failing_since = self.clock()

    def stuck(self) -> bool:
        """Whether the engine has been failing (not merely loading) for longer than allowed."""
        return (self.failing_since is not None
                and self.clock() - self.failing_since > self.config.engine.unhealthy_after_seconds)

    def begin_shutdown(self) -> None:
        self.shutdown_deadline = self.clock() + self.config.limits.shutdown_grace_seconds

    def check_not_stopping(self) -> None:
        if self.shutdown_deadline is not None and self.clock() >= self.shutdown_deadline:
            raise APIError(503, "server_shutting_down", "the server is shutting down; retry on another replica",
                           None, {"Retry-After": "1"})

    # --- limits -------------------------------------------------------------------------------

    def count_request(self, principal: Principal) -> None:
        wait = self.rate_limiter.acquire(principal.owner, self.config.limits.requests_per_minute)
        if wait:
            self.metrics.rejections.labels(limit="requestsPerMinute").inc()
            raise APIError(
                429, "rate_limited", "too many requests: limits.requestsPerMinute reached", None,
                {"Retry-After": retry_after_header(wait)},
            )

    @contextlib.asynccontextmanager
    async def stream_slot(self, principal: Principal) -> AsyncIterator[None]:
        """One of the token's limits.concurrentStreams, held for the block: refused with 429 on entry
        (before any byte of a reply), given back here and only here, however the block ends."""
        if not self.stream_slots.try_acquire(principal.owner, self.config.limits.concurrent_streams):
            self.metrics.rejections.labels(limit="concurrentStreams").inc()
            raise APIError(
                429, "too_many_streams", "too many replies at once: limits.concurrentStreams reached", None,
                {"Retry-After": retry_after_header(StreamSlots.RETRY_SECONDS)},
            )
        self.metrics.active_streams.inc()
        try:
            yield
        finally:
            self.stream_slots.release(principal.owner)
            self.metrics.active_streams.dec()

    def cap_max_tokens(self, value: int, field_name: str | None) -> int:
        """`value` within limits.maxTokens. A value the request sent (`field_name` names it, in the
        protocol's own spelling) is refused past the limit; one from config or a session stored before
        the limit was lowered (`field_name` None) is cut to it."""
        limit = self.config.limits.max_tokens
        if value <= limit:
            return value
        if field_name is None:
            return limit
        raise APIError(422, "max_tokens_too_large", f"{field_name} must be at most {limit}", field_name)

    def check_context(self, prompt_tokens: int, max_tokens: int, prompt_field: str, requested: bool) -> int:
        """The reply's max tokens once the prompt (`prompt_field`, `prompt_tokens` long, history already
        trimmed) is known, so prompt + reply fit the model's context on every route. As with
        cap_max_tokens, a number the request sent itself (`requested`) is refused with 422 if it does not
        fit; one from config or the session is cut to the room left. A prompt that leaves no room at all
        is refused either way."""
        context = self.engine.context_length
        room = context - prompt_tokens
        if max_tokens <= room:
            return max_tokens
        if room > 0 and not requested:
            return room
        raise APIError(
            422, "context_length_exceeded",
            f"{prompt_field} is {prompt_tokens} tokens; with {max_tokens} to generate that is over the "
            f"model's context of {context}", prompt_field,
        )

    @contextlib.asynccontextmanager
    async def socket_slot(self, principal: Principal | None) -> AsyncIterator[None]:
        """One open WebSocket, held for the block: of all (`principal` None; limits.maxWebsockets, which
        counts those not authenticated yet) or of a token's (limits.websocketsPerToken); 429 on entry."""
        key, limit, name = ((ALL_SOCKETS, self.config.limits.max_websockets, "maxWebsockets") if principal is None
                            else (principal.owner, self.config.limits.websockets_per_token, "websocketsPerToken"))
        if not self.sockets.try_acquire(key, limit):
            self.metrics.rejections.labels(limit=name).inc()
            raise APIError(429, "too_many_connections", f"too many open WebSockets: limits.{name} reached", None)
        try:
            yield
        finally:
            self.sockets.release(key)

    # --- sessions -----------------------------------------------------------------------------

    def check_settings(self, settings: SessionSettings, field_prefix: str = "settings") -> SessionSettings:
        modes = self.config.conversation.personality_modes
        if settings.personality_mode is not None and settings.personality_mode not in modes:
            raise APIError(
                422, "unknown_personality_mode",
                f"{field_prefix}.personalityMode must be one of: {', '.join(sorted(modes))}",
                f"{field_prefix}.personalityMode",
            )
        if settings.max_tokens is not None:
            self.cap_max_tokens(settings.max_tokens, f"{field_prefix}.maxTokens")
        return settings

    def create_session(self, principal: Principal, title: str, settings: SessionSettings) -> StoredSession:
        self.check_settings(settings)
        if self.store.count_sessions(principal.owner) >= self.config.limits.max_sessions_per_token:
            raise APIError(
                429, "too_many_sessions", "limits.maxSessionsPerToken reached: delete a session first", None,
                {"Retry-After": "60"},
            )
        session = self.store.create_session(principal.owner, title, settings.model_dump(by_alias=True), self.assign)
        self.audit.record("session.create", owner=principal.short_id, session=session.id)
        return session

    def assign(self, session_id: str) -> Assignment:
        """The adapter a new session keeps: the candidate for its share of sessions, else the current one."""
        candidate = self.config.candidate
        if candidate is not None and pick_variant(session_id, candidate.share) == "candidate":
            assignment = Assignment("candidate", candidate.version)
        else:
            assignment = Assignment("current", self.engine.active_adapter)
        self.metrics.sessions_assigned.labels(version=assignment.version or BASE_VERSION,
                                              variant=assignment.variant).inc()
        return assignment

    def served_version(self, session: StoredSession) -> tuple[str, str | None, bool]:
        """(variant, adapter version, fell back) of a turn of `session`: what it was assigned while
        that is still served, else the current adapter (sessions older than A/B have no assignment)."""
        assignment = self.store.assignment(session.id)
        current = self.engine.active_adapter
        if assignment is None or assignment.version == current:
            return "current", current, False
        candidate = self.config.candidate
        if candidate is not None and assignment.version == candidate.version:
            return "candidate", candidate.version, False
        return "current", current, True

    def delete_session(self, principal: Principal, session_id: str) -> None:
        """Delete the caller's session with its messages (erased from the database files); 404 if none."""
        if self.store.delete_session(principal.owner, session_id):
            self.audit.record("session.delete", owner=principal.short_id, session=session_id)
        else:
            self.get_session(principal, session_id)  # the usual 404

    def get_session(self, principal: Principal, session_id: str, with_messages: bool = False) -> StoredSession:
        session = self.store.get_session(principal.owner, session_id, with_messages=with_messages)
        if session is None:
            raise APIError(404, "session_not_found", "no such session for this token", "sessionId")
        return session

    # --- turns --------------------------------------------------------------------------------

    def check_message(self, text: str, field_name: str = "message") -> None:
        if len(text) > self.config.limits.max_message_chars:
            raise APIError(
                413, "message_too_long",
                f"{field_name} is longer than limits.maxMessageChars ({self.config.limits.max_message_chars})",
                field_name,
            )
        if not text.strip():
            raise APIError(422, "empty_message", f"{field_name} must not be empty", field_name)

    def require_ready(self) -> None:
        self.check_not_stopping()
        if not self.engine.ready:
            raise APIError(503, "model_loading", "the model is still loading; retry shortly", None, {"Retry-After": "5"})

    @contextlib.asynccontextmanager
    async def turn(self, principal: Principal, user_text: str, session_id: str | None) -> AsyncIterator[Turn]:
        """Everything a turn needs, validated and built with a stream slot held for the block; every
        refusal (APIError) comes on entry, before any reply starts."""
        self.check_message(user_text)
        self.require_ready()
        session = self.get_session(principal, session_id) if session_id is not None else None
        async with self.stream_slot(principal):
            if session is None:
                session = self.create_session(principal, "New conversation", SessionSettings())
            yield await self.build_turn(principal, session, user_text)

    async def build_turn(self, principal: Principal, session: StoredSession, user_text: str) -> Turn:
        conversation = self.config.conversation
        settings = SessionSettings.model_validate(session.settings)
        mode_name = settings.personality_mode or conversation.default_mode
        mode = conversation.personality_modes.get(mode_name)
        if mode is None:  # the mode was removed from config since the session chose it
            mode_name, mode = conversation.default_mode, conversation.personality_modes[conversation.default_mode]
        sampling = resolve_sampling(mode, conversation, settings.temperature, settings.max_tokens)
        max_tokens = self.cap_max_tokens(sampling.max_tokens, None)  # the request sent no number of its own
        stored = self.store.recent_messages(principal.owner, session.id, conversation.history_window)
        history = [{"role": m.role, "content": m.content} for m in stored]
        system_prompt = build_system_prompt(
            mode, self.config.persona.display_name, settings.enable_emotional_tone, conversation
        )
        # The session's adapter (its A/B variant's); the base model has no memory.
        variant, version, fallback = self.served_version(session)
        recall_settings = memory_settings(conversation, mode, settings.memory)
        messages, recall = await self.grounded_messages(
            version, system_prompt, recall_settings, history, user_text,
            lambda prompt: self.fit_messages(prompt, history, user_text, max_tokens),
        )
        # Trimming kept back at most half the context for the reply; a longer one is cut to what is left.
        max_tokens = self.check_context(self.engine.count_tokens(messages), max_tokens, "message", requested=False)
        params = GenerationParams(max_tokens=max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                                  adapter=BASE_MODEL if version is None else version)
        return Turn(principal, session, user_text, messages, mode_name, params, history_messages=len(messages) - 2,
                    memories=recall.ids, variant=variant, variant_fallback=fallback)

    # --- adapters -----------------------------------------------------------------------------

    async def expect_adapter(self, adapter: Adapter) -> None:
        """Before `adapter.version` is served (at start, on reload): its recorded digest binds the
        engine, and a folder whose manifest differs is refused now, before its weights or memory
        are read; AdapterDigestError, counted by version."""
        if adapter.version is None or adapter.manifest_sha256 is None:
            return
        self.engine.recorded_digests[adapter.version] = adapter.manifest_sha256
        try:
            await asyncio.to_thread(check_digest, adapter.path_for(adapter.version), adapter.version,
                                    adapter.manifest_sha256)
        except AdapterDigestError:
            self.metrics.adapter_refusals.labels(version=adapter.version, reason="digest_mismatch").inc()
            raise

    def audit_adapter_load(self, adapter: Adapter, trigger: str, error: Exception | None = None) -> None:
        """The audit record of serving `adapter` (at "start" or on "reload"), with the sha256 of the
        manifest in its folder: what was loaded, whether or not the operator recorded a digest."""
        digest = None
        if adapter.version is not None:
            try:
                digest = manifest_digest(adapter.path_for(adapter.version))
            except OSError:
                pass  # no readable manifest: the failure says so
        self.audit.record("adapter.load", "failure" if error else "success", trigger=trigger,
                          adapterVersion=adapter.version, manifestSha256=digest,
                          reason=type(error).__name__ if error else None)

    # --- memory -------------------------------------------------------------------------------

    async def load_memory(self, version: str | None) -> MemoryIndex | None:
        """Read the memory index of adapter `version` (with the adapter); AdapterError if it is broken."""
        if version is None:
            return None
        index = await self.memories.load(version, self.config.adapter.path_for(version))
        self.memories.keep_only({*self.engine.loaded_adapters(), self.engine.active_adapter, version})
        return index

    async def memory_index(self, version: str | None) -> MemoryIndex | None:
        """The memory of `version`, loading it if needed; a broken index is logged and means no memory."""
        if version is None:
            return None
        if version in self.memories.indexes:
            return self.memories.indexes[version]
        try:
            return await self.load_memory(version)
        except AdapterError as error:
            log.error("memory not used: %s", error)
            self.memories.forget(version)
            return None

    async def recall(self, version: str | None, settings: MemorySettings, user_text: str,
                     history: list[dict[str, str]]) -> tuple[MemoryIndex | None, Recall]:
        """The memories of adapter `version` closest to this turn (none if it has no index)."""
        index = await self.memory_index(version)
        query = memory.retrieval_query(user_text, history)
        return index, await self.memories.recall(index, query, settings, self.count_text_tokens)

    def count_text_tokens(self, text: str) -> int:
        # As a message of its own: over-counts by the template's few tokens, which errs on the safe side.
        return self.engine.count_tokens([{"role": "user", "content": text}])

    async def grounded_messages(
        self, version: str | None, system_prompt: str, settings: MemorySettings, history: list[dict[str, str]],
        user_text: str, fit: Callable[[str], list[dict[str, str]]],
    ) -> tuple[list[dict[str, str]], Recall]:
        """`fit(system prompt)` (the turn's messages) with the prompt carrying the memories of adapter
        `version` closest to the turn, or the note that none is; as configured where it has no index."""
        index, recall = await self.recall(version, settings, user_text, history)
        if index is None:  # an adapter without memory files, or the base model
            return fit(system_prompt), NO_RECALL
        try:
            return fit(memory.system_prompt_with_memories(system_prompt, recall, settings)), recall
        except APIError:
            if not recall.items:
                raise
        # The memories pushed the new message past the context: answer without them rather than refuse.
        return fit(memory.system_prompt_with_memories(system_prompt, NO_RECALL, settings)), NO_RECALL

    def fit_messages(self, system_prompt: str, history: list, user_text: str, reserve: int) -> list[dict[str, str]]:
        try:
            return build_messages(
                system_prompt=system_prompt,
                history=history,
                user_text=user_text,
                window=self.config.conversation.history_window,
                count_tokens=self.engine.count_tokens,
                context_length=self.engine.context_length,
                reserve_tokens=min(reserve, self.engine.context_length // 2),
            )
        except PromptTooLongError:
            raise APIError(413, "message_too_long", "message does not fit the model's context", "message") from None

    async def generation(self, stream: AsyncIterator[Piece], stats: GenerationStats) -> AsyncIterator[Piece]:
        """An engine stream as the API sees it: engine failures as API errors (their messages hold no
        request text), and the metrics kept however it ends (stopped early counts as cancelled)."""
        outcome = "cancelled"  # unless it completes or fails
        try:
            async with contextlib.aclosing(self._engine_errors(stream)) as pieces:
                async for piece in pieces:
                    self.check_not_stopping()
                    yield piece
            outcome = "ok"
        except APIError:
            outcome = "error"
            raise
        finally:
            self.observe_outcome(stats, outcome)
        self.observe(stats)

    async def _engine_errors(self, stream: AsyncIterator[Piece]) -> AsyncIterator[Piece]:
        """Engine failures as API errors (their messages hold no request text)."""
        try:
            async with contextlib.aclosing(stream) as pieces:
                async for piece in pieces:
                    yield piece
        except AdapterError as error:
            raise APIError(503, "adapter_unavailable", str(error), None) from None
        except GenerationTimeoutError as error:
            raise APIError(504, "generation_timeout", str(error), None) from None
        except EngineError as error:
            raise APIError(502, "engine_error", str(error), None) from None

    def observe_outcome(self, stats: GenerationStats, outcome: str) -> None:
        """Count a reply of its adapter version as ok, error or cancelled (a client that left)."""
        version = stats.adapter_version or BASE_VERSION
        self.metrics.replies.labels(version=version, outcome=outcome).inc()
        figures = self.version_figures.setdefault(version, VersionFigures())
        if outcome == "ok":
            figures.replies += 1
            figures.latencies_ms.append(stats.total_seconds * 1000)
            return
        self.metrics.cancelled.inc()  # any generation that did not finish, as it always counted
        if outcome == "error":
            figures.errors += 1

    def stats(self) -> dict[str, Any]:
        """Per adapter version: sessions and ratings (stored), replies, errors, latency (this process)."""
        stored = self.store.version_counts()
        versions = {}
        for version in sorted({*stored, *self.version_figures}):
            counts = stored.get(version, {"sessions": 0, "ratingsUp": 0, "ratingsDown": 0})
            figures = self.version_figures.get(version, VersionFigures()).describe()
            versions[version] = {"sessions": counts["sessions"], "replies": figures["replies"],
                                 "errors": figures["errors"], "ratingsUp": counts["ratingsUp"],
                                 "ratingsDown": counts["ratingsDown"], "latencyMsP50": figures["latencyMsP50"],
                                 "latencyMsP95": figures["latencyMsP95"]}
        candidate = self.config.candidate
        return {"versions": versions,
                "candidate": None if candidate is None else {"version": candidate.version, "share": candidate.share}}

    def reply(self, messages: list[dict[str, str]], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        """The text pieces of the reply to `messages`."""
        return self.generation(self.engine.stream(messages, params, stats), stats)

    async def generate(self, turn: Turn) -> AsyncIterator[str]:
        """The reply's text pieces; stores the exchange once the reply is complete."""
        pieces: list[str] = []
        async with contextlib.aclosing(self.reply(turn.messages, turn.params, turn.stats)) as stream:
            async for piece in stream:
                pieces.append(piece)
                yield piece
        turn.reply = "".join(pieces)
        turn.metadata = self.describe(turn)
        turn.message_id = self.store.append_exchange(turn.principal.owner, turn.session.id, turn.user_text,
                                                     turn.reply, turn.metadata)
        if turn.message_id is None:
            log.info("session deleted while replying; reply not stored (token %s)", turn.principal.short_id)

    async def complete(self, turn: Turn) -> str:
        async for _ in self.generate(turn):
            pass
        return turn.reply

    def describe(self, turn: Turn) -> dict[str, Any]:
        stats = turn.stats
        ttft = stats.time_to_first_token
        return {
            "tokens": {
                "prompt": stats.prompt_tokens,
                "completion": stats.completion_tokens,
                "total": stats.prompt_tokens + stats.completion_tokens,
            },
            "timing": {
                "timeToFirstTokenMs": None if ttft is None else round(ttft * 1000, 2),
                "totalMs": round(stats.total_seconds * 1000, 2),
                "tokensPerSecond": round(stats.tokens_per_second, 2),
            },
            "adapterVersion": stats.adapter_version,
            "model": self.engine.model_name,
            "engine": self.engine.kind,
            "personalityMode": turn.mode,
            "historyMessages": turn.history_messages,
            "finishReason": stats.finish_reason,
            "confidence": stats.confidence,
            "memories": list(turn.memories),
            "variant": turn.variant,
            **({"variantFallback": True} if turn.variant_fallback else {}),
        }

    def observe(self, stats: GenerationStats) -> None:
        kind = self.engine.kind
        if stats.time_to_first_token is not None:
            self.metrics.time_to_first_token.labels(engine=kind).observe(stats.time_to_first_token)
        if stats.tokens_per_second:
            self.metrics.tokens_per_second.labels(engine=kind).observe(stats.tokens_per_second)
        self.metrics.generated_tokens.labels(engine=kind).inc(stats.completion_tokens)
