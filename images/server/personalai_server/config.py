"""The server's config file: one typed contract, written by the operator from the PersonalAI spec.

    python -m personalai_server --config /etc/personalai/server.yaml

JSON or YAML (by extension; YAML is a superset of JSON so anything else is read as YAML). Keys are
camelCase, unknown keys are an error, and every path in it is resolved through
`personalai_contracts.paths.resolve` by the code that opens it. images/server/README.md documents
each field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from personalai_contracts.memory import MemorySettings
from personalai_contracts.paths import resolve


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Persona(_Model):
    display_name: str = Field(min_length=1, max_length=200)
    personal_ai: str = Field(alias="personalAI", min_length=1, max_length=253)


class Engine(_Model):
    kind: Literal["local", "tgi", "vllm"] = "local"
    # Base URL of a remote engine (tgi, vllm); unused by local.
    url: str | None = None
    # Bearer token file for the remote engine (a mounted Secret), when it asks for one.
    token_file: str | None = None
    # A local model dir (through the path prefix), or a hub id looked up under modelCache.
    base_model: str
    model_cache: str | None = None
    quantization: Literal["nf4", "none"] = "none"
    max_loaded_adapters: int = Field(default=3, ge=1, le=64)
    # Generations run at once in-process; more requests wait their turn (CPU threads are few).
    max_concurrent_generations: int = Field(default=4, ge=1, le=256)
    # Context length of a remote engine's model; local reads it from the model config.
    context_length: int | None = Field(default=None, ge=64)
    request_timeout_seconds: float = Field(default=120.0, gt=0)
    # A local generation still running after this long is stopped with a 504 (or a stream's error event).
    generation_timeout_seconds: float = Field(default=300.0, gt=0)
    # /healthz turns 503 once the engine has failed to start for this long, so the kubelet restarts
    # the pod; a model that is still loading is never counted as failing.
    unhealthy_after_seconds: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _remote_needs_url(self) -> Engine:
        if self.kind in ("tgi", "vllm") and not self.url:
            raise ValueError(f"engine.url is required when engine.kind is {self.kind}")
        return self


class Adapter(_Model):
    # None: serve the base model alone (before the first training run finished).
    version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    dir: str = "/artifacts"
    # sha256 of the version's manifest.json as the operator recorded it (adapters.py): a folder with
    # any other manifest is refused. None: only the manifest's own sha256 of every file is checked.
    manifest_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _digest_needs_version(self) -> Adapter:
        if self.manifest_sha256 is not None and self.version is None:
            raise ValueError("adapter.manifestSha256 is the digest of adapter.version, which is not set")
        return self

    def path_for(self, version: str) -> Path:
        """The adapter folder of `version` as this process sees it."""
        return resolve(self.dir) / version


ADAPTER_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Candidate(_Model):
    """A second adapter version served beside adapter.version (an A/B test), from the same adapter.dir
    and in the same engine: `share` percent of NEW sessions get it; a session keeps what it got."""
    version: str = Field(pattern=ADAPTER_VERSION_PATTERN)
    manifest_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    share: int = Field(ge=0, le=100)


_MEMORY_DEFAULTS = MemorySettings()


class Memory(_Model):
    """Retrieval of the person's own reflections into the system prompt (personalai_contracts.memory)."""

    enabled: bool = _MEMORY_DEFAULTS.enabled
    max_memories: int = Field(default=_MEMORY_DEFAULTS.max_memories, ge=0, le=20)
    token_budget: int = Field(default=_MEMORY_DEFAULTS.token_budget, ge=0, le=8000)
    min_similarity: float = Field(default=_MEMORY_DEFAULTS.min_similarity, ge=0.0, le=1.0)


class MemoryOverride(_Model):
    """A mode's changes to conversation.memory; a field left out keeps the conversation's value."""

    enabled: bool | None = None
    max_memories: int | None = Field(default=None, ge=0, le=20)
    token_budget: int | None = Field(default=None, ge=0, le=8000)
    min_similarity: float | None = Field(default=None, ge=0.0, le=1.0)


class PersonalityMode(_Model):
    # May contain {displayName}; nothing else is substituted, and never user text.
    system_prompt: str = Field(min_length=1, max_length=8000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    memory: MemoryOverride | None = None

    @field_validator("system_prompt")
    @classmethod
    def _only_display_name(cls, value: str) -> str:
        try:
            value.format(displayName="x")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError("systemPrompt may only use the placeholder {displayName}") from error
        return value


# The built-in modes (the brief's wise and nostalgic, and playful): a config's personalityModes add to
# them unless conversation.modesPolicy is replace. personalai_contracts.names.DEFAULT_MODE_NAMES names them.
DEFAULT_MODES = {
    "wise": PersonalityMode(
        system_prompt=(
            "You are {displayName}. Answer as {displayName} would: thoughtful, calm, drawing on "
            "life experience, in the first person."
        ),
        temperature=0.6,
    ),
    "nostalgic": PersonalityMode(
        system_prompt=(
            "You are {displayName}. Answer as {displayName} would, warmly, often recalling memories "
            "and the people and places of the past, in the first person."
        ),
        temperature=0.8,
    ),
    "playful": PersonalityMode(
        system_prompt=(
            "You are {displayName}. Answer as {displayName} would on a good day: light, teasing, "
            "curious, in the first person."
        ),
        temperature=0.9,
        top_p=0.95,
    ),
}


class Conversation(_Model):
    history_window: int = Field(default=10, ge=0, le=200)
    default_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1)
    retention_days: int = Field(default=30, ge=0, description=(
        "Days a session may go unused before it is deleted with its messages; 0: never purged, kept until "
        "the session or the PersonalAI is deleted (the PersonalAI spec's retention.sessionDays)."))
    default_mode: str = "wise"
    # add: personalityModes join DEFAULT_MODES (one of the same name wins); replace: only they are offered.
    modes_policy: Literal["add", "replace"] = "add"
    personality_modes: dict[str, PersonalityMode] = Field(default_factory=lambda: dict(DEFAULT_MODES))
    # Added to the system prompt when a session sets enableEmotionalTone.
    emotional_tone_prompt: str = Field(
        default="Let your feelings show in your tone, as you would with someone close to you.",
        max_length=2000,
    )
    memory: Memory = Field(default_factory=Memory)

    @model_validator(mode="before")
    @classmethod
    def _add_default_modes(cls, data: Any) -> Any:
        """Under modesPolicy add, the modes given are merged over the built-in ones before validation."""
        if not isinstance(data, dict):
            return data
        policy = data.get("modesPolicy", data.get("modes_policy", "add"))
        key = next((key for key in ("personalityModes", "personality_modes") if key in data), None)
        if policy != "add" or key is None or not isinstance(data[key], dict):
            return data
        return {**data, key: {**DEFAULT_MODES, **data[key]}}

    @model_validator(mode="after")
    def _default_mode_exists(self) -> Conversation:
        if not self.personality_modes:
            raise ValueError("conversation.personalityModes needs at least one mode")
        if self.default_mode not in self.personality_modes:
            raise ValueError("conversation.defaultMode must name one of conversation.personalityModes")
        return self


def memory_settings(conversation: Conversation, mode: PersonalityMode, session_memory: bool = True) -> MemorySettings:
    """The memory settings of a turn: the mode's override wins over the conversation's; a session may
    only switch memory off (what a person's AI may recall is the operator's choice, not the caller's)."""
    merged = conversation.memory.model_dump()
    if mode.memory is not None:
        merged.update(mode.memory.model_dump(exclude_none=True))
    if not session_memory:
        merged["enabled"] = False
    return MemorySettings(**merged)


class Storage(_Model):
    data_dir: str = "/data"


class Auth(_Model):
    tokens_dir: str = "/etc/personalai/auth"
    # A scraper's tokens (a Prometheus): they read GET /metrics and nothing else. None: only tokensDir's do.
    metrics_tokens_dir: str | None = None


class Limits(_Model):
    max_request_bytes: int = Field(default=65536, ge=1024)
    max_message_chars: int = Field(default=4000, ge=1)
    max_tokens: int = Field(default=1024, ge=1)
    requests_per_minute: int = Field(default=60, ge=1)
    concurrent_streams: int = Field(default=4, ge=1)
    max_sessions_per_token: int = Field(default=1000, ge=1)
    # A WebSocket must authenticate within this long or it is closed with 1008 (policy violation).
    websocket_auth_seconds: float = Field(default=5.0, gt=0, le=300)
    # Open WebSockets per token, and in all (unauthenticated ones count toward the total).
    websockets_per_token: int = Field(default=4, ge=1)
    max_websockets: int = Field(default=64, ge=1)
    # On SIGTERM, replies already streaming get this long to finish; then they end with an error event.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=3600)


class Audit(_Model):
    """The audit stream (audit.py): one JSON line per auth attempt, session create and delete, adapter
    load and retention purge; identifiers only, never message text, titles or tokens."""

    sink: str = Field(default="stderr", min_length=1, description=(
        '"stderr" (beside the logs, for the cluster\'s log collector), or a file path (through the path '
        "prefix, e.g. on the data volume), rotated at midnight UTC"))
    keep_days: int = Field(default=90, ge=1, le=3650, description=(
        "Rotated files of a file sink kept, one a day. 90: long enough to look into an incident reported "
        "weeks later; the record of who chatted when is not kept for longer than that use needs."))


class Listen(_Model):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)


class ServerConfig(_Model):
    persona: Persona
    engine: Engine
    adapter: Adapter = Field(default_factory=Adapter)
    # None: no A/B test, every session gets adapter.version.
    candidate: Candidate | None = None
    conversation: Conversation = Field(default_factory=Conversation)
    storage: Storage = Field(default_factory=Storage)
    auth: Auth = Field(default_factory=Auth)
    limits: Limits = Field(default_factory=Limits)
    listen: Listen = Field(default_factory=Listen)
    audit: Audit = Field(default_factory=Audit)
    reload_interval_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _max_tokens_within_limit(self) -> ServerConfig:
        if self.conversation.max_tokens > self.limits.max_tokens:
            raise ValueError("conversation.maxTokens must not exceed limits.maxTokens")
        return self

    @model_validator(mode="after")
    def _candidate_beside_an_adapter(self) -> ServerConfig:
        if self.candidate is not None and self.candidate.version == self.adapter.version:
            raise ValueError("candidate.version must differ from adapter.version")
        return self


def parse_config(data: dict) -> ServerConfig:
    """Validate a config mapping; errors name the field path, not the value."""
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "invalid server config: " + "; ".join(parts)


def load_config(path: str | Path) -> ServerConfig:
    """Read and validate the config file at `path` (resolved through the path prefix)."""
    host_path = resolve(path)
    try:
        text = host_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read server config {host_path}: {error.strerror}") from None
    try:
        data = json.loads(text) if host_path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        line = getattr(error, "lineno", None) or getattr(getattr(error, "problem_mark", None), "line", None)
        raise ConfigError(f"server config {host_path} is not valid JSON/YAML (line {line})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"server config {host_path} must be a mapping at the top level")
    return parse_config(data)
