"""Typed models of the two custom resources, and the one source of their CRD schemas.

`crdgen` turns these models (field descriptions, bounds, enums, defaults and the CEL rules in
`json_schema_extra`) into crds/*.yaml; a unit test keeps the files in step. Handlers parse a
custom resource's spec and status into these models once and pass typed objects inward.
`spec.training` and `spec.validation` are the trainer config's own classes (personalai_contracts.trainer_config).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import JsonDict

from personalai_contracts.names import DEFAULT_MODE_NAMES  # the chat server's built-in modes
from personalai_contracts.run_report import (
    SHA256_HEX,
    Artifact,
    StatusModel,
    ThermalReport,
    TrainingProgress,
    ValidationResult,
)
from personalai_contracts.trainer_config import (
    DEFAULT_BASE_MODEL,
    CamelModel,
    MemoryConfig,
    TrainingConfig,
    ValidationConfig,
)

GROUP = "personalai.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Run names are "<personalai>-<8 hex>" and must stay valid label values (63 characters).
MAX_PERSONALAI_NAME = 45
# A PersonalAI's name is the stem of its children's: the chat Service "<name>-chat" must be a
# DNS-1035 label (a letter first), which a valid object name alone (DNS-1123: dots, digit first) is not.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PERSONALAI_NAME_RULES = [{  # root-level CEL rules of the PersonalAI CRD (crdgen)
    "rule": f"self.metadata.name.matches('{DNS_1035_LABEL}')",
    "message": "metadata.name must start with a lowercase letter and contain only lowercase letters, digits and "
               "'-' (no dots): the chat Service <name>-chat must be a DNS-1035 label",
    "reason": "FieldValueInvalid",
}, {
    "rule": f"self.metadata.name.size() <= {MAX_PERSONALAI_NAME}",
    "message": f"metadata.name must be at most {MAX_PERSONALAI_NAME} characters: TrainingRun names "
               "<name>-<8 hex> must stay valid label values (63 characters)",
    "reason": "FieldValueInvalid",
}]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"


# ---- where the reflections are --------------------------------------------------------------

class KeyReference(CamelModel):
    """One key of a Secret or ConfigMap in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                      description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, pattern=CONFIG_KEY,
                     description="Key holding the export; its extension (.json, .jsonl, .csv, .md) names the format.")


class ReflectionsSource(CamelModel):
    """The person's reflections: exactly one of a Secret key or a ConfigMap key."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.secretRef) != has(self.configMapRef)",
        "message": "set exactly one of secretRef or configMapRef",
    }]})

    secret_ref: KeyReference | None = Field(None, description="A Secret key holding the reflections (preferred).")
    config_map_ref: KeyReference | None = Field(None, description="A ConfigMap key holding the reflections.")

    @property
    def ref(self) -> KeyReference:
        ref = self.secret_ref or self.config_map_ref
        if ref is None:  # the CRD's CEL rule makes this unreachable for stored objects
            raise ValueError("spec.reflections: set exactly one of secretRef or configMapRef")
        return ref

    @property
    def kind(self) -> Literal["Secret", "ConfigMap"]:
        return "Secret" if self.secret_ref is not None else "ConfigMap"


# ---- serving and retention ------------------------------------------------------------------

class MemoryOverride(CamelModel):
    """A personality mode's changes to serving.memory; a field left out keeps serving.memory's value."""

    enabled: bool | None = Field(None, description="Put the person's closest reflections into this mode's prompts.")
    max_memories: int | None = Field(None, ge=0, le=20, description="Most reflections recalled per reply.")
    token_budget: int | None = Field(None, ge=0, le=8000, description="Most prompt tokens the recalled reflections take.")
    min_similarity: float | None = Field(None, ge=0.0, le=1.0, description="Lowest MiniLM cosine for a reflection to be recalled in this mode.")


class PersonalityMode(CamelModel):
    """One way the AI can speak: its system prompt and sampling."""

    system_prompt: str = Field(min_length=1, max_length=8000, description="System prompt for this mode.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature; default: serving.temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling top-p.")
    description: str | None = Field(None, max_length=500, description="What the mode is for, shown to the user.")
    memory: MemoryOverride | None = Field(None, description="This mode's changes to serving.memory.")


class ABTest(CamelModel):
    """A candidate adapter served beside the current one to a share of new chat sessions."""

    candidate_version: str = Field(min_length=1, max_length=63, description="An adapter of this PersonalAI's "
                                   "status.adapterHistory that passed validation, other than the current one.")
    share: int = Field(50, ge=0, le=100, description="Percent of new sessions given the candidate (a session keeps "
                       "the adapter it started with).")
    decision: Literal["Promote", "Drop"] | None = Field(
        None, description="Promote: the candidate becomes the current adapter; Drop: the candidate stops serving. "
        "Either ends the test; status.abTest records the outcome.")


class ServingConfig(CamelModel):
    """How the trained model is served for chat."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!has(self.defaultMode) || (has(self.personalityModes) && self.defaultMode in self.personalityModes)"
                " || ((!has(self.modesPolicy) || self.modesPolicy == 'add') && self.defaultMode in "
                f"{list(DEFAULT_MODE_NAMES)})",
        "message": "defaultMode must name one of personalityModes, or with modesPolicy add one of "
                   f"{', '.join(DEFAULT_MODE_NAMES)}",
        "fieldPath": ".defaultMode",
    }, {
        "rule": "!has(self.engineUrl) || (has(self.engine) && self.engine != 'local')",
        "message": "engineUrl is only used with engine tgi or vllm",
        "fieldPath": ".engineUrl",
    }]})

    enabled: bool = Field(True, description="Run a chat server once an adapter has passed validation "
                          "(default: on; the point of training is to talk with it).")
    engine: Literal["local", "tgi", "vllm"] | None = Field(
        None, description="Inference engine; default: the operator's setting. local: in-process transformers+peft.")
    engine_url: str | None = Field(None, max_length=2048, pattern=r"^https?://",
                                   description="Base URL of an existing TGI or vLLM server.")
    adapter_version: str | None = Field(None, max_length=63,
                                        description="Pin this adapter version (rollback); default: the newest that passed.")
    personality_modes: dict[str, PersonalityMode] = Field(
        default_factory=dict, max_length=16, json_schema_extra={"maxProperties": 16},
        description="Named personality modes, added to the chat server's built-in ones "
        f"({', '.join(DEFAULT_MODE_NAMES)}) or replacing them, as modesPolicy says.")
    modes_policy: Literal["add", "replace"] = Field(
        "add", description="add (default): personalityModes join the built-in modes, so a chat may always ask for "
        "the brief's wise or nostalgic (a mode of the same name replaces the built-in one); "
        "replace: only personalityModes are offered.")
    default_mode: str | None = Field(None, max_length=63, description="The mode used when a chat names none.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default sampling temperature. 0.7: varied "
                               "enough to sound like a person, steady enough to stay on what they wrote.")
    max_tokens: int = Field(256, ge=1, le=8192, description="Most tokens generated per reply. 256: a few "
                             "spoken paragraphs, the length of the person's own answers.")
    history_window: int = Field(10, ge=0, le=200, description="Earlier messages kept in the prompt. 10: the "
                                 "product's conversation memory, and it fits a small model's context.")
    memory: MemoryConfig = Field(default_factory=MemoryConfig,
                                 description="Recall of the person's own reflections into the prompt at chat time.")
    ab_test: ABTest | None = Field(None, description="Serve a candidate adapter beside the current one (in the "
                                   "same chat server, no extra model slot) and compare them in status.abTest.")


class RetentionConfig(CamelModel):
    """How long data made from the reflections is kept (0: until the PersonalAI is deleted)."""

    session_days: int = Field(30, ge=0, le=3650, description="Days to keep chat sessions. 30: a month of "
                               "conversation to return to; chat text is personal data, not kept longer by default.")
    artifact_days: int = Field(90, ge=0, le=3650, description="Days to keep, from their run's end, adapters that "
                                "are not in use and finished runs' checkpoints. The current adapter and the "
                                "promoted history (rollback) are never removed. 90: a season of rollback; 0: keep "
                                "until the PersonalAI is deleted.")


# ---- status pieces -------------------------------------------------------------------------

class Condition(StatusModel):
    """A Kubernetes-style condition."""

    type: str = Field(max_length=64, description="DataReady, Trained, Serving, Ready; Queued, Running, Succeeded, Failed, Validated.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field("", max_length=128, description="CamelCase reason for the last transition.")
    message: str = Field("", max_length=2048, description="Human-readable detail; never contains reflection text.")
    last_transition_time: str | None = Field(None, json_schema_extra={"format": "date-time"},
                                             description="When status last changed.")
    observed_generation: int | None = Field(None, ge=0, description="The .metadata.generation this condition reflects.")


CONDITIONS_SCHEMA: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"], "maxItems": 16}


class DataAssessmentStatus(StatusModel):
    """How much the person has written and what is missing (personalai_contracts.assess_readiness)."""

    responses: int = Field(0, description="Answered reflections.")
    average_words: float = Field(0.0, description="Average words per answer.")
    categories: int = Field(0, description="Distinct categories.")
    total_words: int = Field(0, description="Words in all answers.")
    level: Literal["insufficient", "minimum", "optimal"] = Field("insufficient", description="Readiness level reached.")
    missing: list[str] = Field(default_factory=list, description='What is short of the next level, e.g. "14 of 20 responses".')
    message: str = Field("", description="One-line summary.")
    data_version: str | None = Field(None, description="sha256 of the reflections assessed.")


class AdapterRecord(StatusModel):
    """A trained adapter: promoted (current or earlier), or rejected with the reason."""

    version: str = Field(description="Adapter version.")
    training_run: str | None = Field(None, description="The TrainingRun that produced it.")
    location: str | None = Field(None, description="Adapter directory on the artifacts volume.")
    manifest_sha256: str | None = Field(None, pattern=SHA256_HEX, description="sha256 of its manifest.json "
                                        "(which lists every file's sha256): the chat server loads nothing else.")
    data_version: str | None = Field(None, description="sha256 of the reflections it was trained on.")
    metrics: ValidationResult | None = Field(None, description="Its validation metrics.")
    promoted_at: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When it became current.")
    rejected: str | None = Field(None, max_length=2048, description="Why it was not promoted: the gate's missed "
                                 "thresholds, or the metric on which it was worse than the current adapter.")


class AccessStatus(StatusModel):
    """The person's bearer token, published as a digest: a gateway matches a presented token's sha256
    against tokenSha256 and never reads the Secret. Delete the Secret to rotate the token."""

    token_secret: str = Field(description="The Secret (key `token`) holding the person's bearer token.")
    token_sha256: str = Field(pattern=SHA256_HEX, description="Hex sha256 of the token's UTF-8 bytes.")


class VersionStats(StatusModel):
    """One adapter version's figures from the chat server's stats (counts only, never text)."""

    sessions: int = Field(0, ge=0, description="Sessions assigned this version (stored, survive restarts).")
    replies: int = Field(0, ge=0, description="Replies since the chat server started.")
    errors: int = Field(0, ge=0, description="Failed replies since the chat server started.")
    ratings_up: int = Field(0, ge=0, description="Replies rated up.")
    ratings_down: int = Field(0, ge=0, description="Replies rated down.")
    latency_ms_p50: float | None = Field(None, description="Median reply latency since the server started, ms.")
    latency_ms_p95: float | None = Field(None, description="95th percentile reply latency, ms.")


class ABTestStatus(StatusModel):
    """What became of spec.serving.abTest."""

    candidate_version: str | None = Field(None, description="The candidate adapter version.")
    share: int | None = Field(None, ge=0, le=100, description="Percent of new sessions given the candidate.")
    phase: Literal["Running", "Promoted", "Dropped", "Invalid"] = Field(description="Running, Promoted, Dropped "
                                                                         "or Invalid (message names the field).")
    message: str = Field("", max_length=2048, description="In words, with both versions.")
    versions: dict[str, VersionStats] = Field(default_factory=dict, json_schema_extra={"maxProperties": 64},
                                              description="The chat server's figures by adapter version.")
    observed_at: str | None = Field(None, json_schema_extra={"format": "date-time"},
                                    description="When the figures last changed.")


class RatingCounts(StatusModel):
    """Ratings of one adapter version's replies."""

    up: int = Field(0, ge=0, description="Replies rated up.")
    down: int = Field(0, ge=0, description="Replies rated down.")


# ---- PersonalAI ----------------------------------------------------------------------------

class PersonalAISpec(CamelModel):
    """What the person wants: their reflections, how to train on them and how to serve the result."""

    display_name: str = Field(min_length=1, max_length=100, description="The name the AI answers to.")
    reflections: ReflectionsSource = Field(description="Where the person's reflections are.")
    base_model: str = Field(DEFAULT_BASE_MODEL, min_length=1, max_length=253,
                            description="Hugging Face id or local directory of the base model. Default: "
                            "Mistral-7B-Instruct v0.3, which QLoRA trains on one RTX 5090.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, json_schema_extra={"default": {}},
                                     description="Fine-tuning settings.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, json_schema_extra={"default": {}},
                                             description="Thresholds a new adapter must pass.")
    serving: ServingConfig = Field(default_factory=ServingConfig, json_schema_extra={"default": {}},
                                   description="Chat serving settings.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, json_schema_extra={"default": {}},
                                       description="How long derived data is kept.")
    suspend: bool = Field(False, description="true: assess the reflections (status.dataAssessment, DataReady) but "
                          "make no TrainingRun; Trained says Suspended. A run still going when this is set is stopped "
                          "(its Job deleted, the run Failed with reason Superseded), as a data change stops one; "
                          "setting it back to false resumes that run, or makes the run the data and config call for. "
                          "An adapter already serving keeps serving. Default false: kubectl apply trains at once.")


class PersonalAIStatus(StatusModel):
    """What the operator observed and did."""

    phase: Literal["Pending", "AwaitingData", "Suspended", "Training", "Trained", "Serving", "Failed"] | None = Field(
        None, description="Summary of the conditions.")
    observed_generation: int | None = Field(None, description="The .metadata.generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA,
                                        description="DataReady, Trained, Serving, Ready; DataPurged while deleted.")
    data_assessment: DataAssessmentStatus | None = Field(None, description="Readiness of the reflections.")
    latest_training_run: str | None = Field(None, description="The TrainingRun for the current data and config.")
    current_adapter: AdapterRecord | None = Field(None, description="The adapter being served.")
    adapter_history: list[AdapterRecord] = Field(default_factory=list, json_schema_extra={"maxItems": 100},
                                                 description="Earlier adapters, newest first, for rollback.")
    endpoint: str | None = Field(None, description="URL of the chat server.")
    access: AccessStatus | None = Field(None, description="The person's bearer token: where it is, and its digest.")
    ab_test: ABTestStatus | None = Field(None, description="The A/B test of spec.serving.abTest.")
    ratings: dict[str, RatingCounts] = Field(default_factory=dict, json_schema_extra={"maxProperties": 64},
                                             description="Ratings by adapter version, from the chat server.")


# ---- TrainingRun ---------------------------------------------------------------------------

class TrainingRunSpec(CamelModel):
    """One fine-tuning attempt; immutable once created (a change is a new run)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "self == oldSelf",
        "message": "spec is immutable: create a new TrainingRun instead",
    }]})

    personal_ai: str = Field(alias="personalAI", min_length=1, max_length=MAX_PERSONALAI_NAME, pattern=DNS_LABEL,
                             description="The PersonalAI this run trains.")
    base_model: str = Field(DEFAULT_BASE_MODEL, min_length=1, max_length=253,
                            description="Hugging Face id or local directory of the base model. Default: "
                            "Mistral-7B-Instruct v0.3, which QLoRA trains on one RTX 5090.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, json_schema_extra={"default": {}},
                                     description="The resolved training settings.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, json_schema_extra={"default": {}},
                                             description="Thresholds the adapter must pass.")
    reflections: ReflectionsSource = Field(description="Where the reflections are (mounted read-only).")
    data_version: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$", max_length=71,
                                     description="sha256 of the reflections when the run was made.")
    adapter_version: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                                 description="The adapter version this run writes.")


class TrainingRunStatus(StatusModel):
    """The run's Job and pod, mirrored, plus what the trainer reports."""

    phase: Literal["Pending", "Queued", "Running", "Succeeded", "Failed"] | None = Field(
        None, description="Pending, Queued (waiting for a GPU), Running, Succeeded or Failed.")
    observed_generation: int | None = Field(None, description="The .metadata.generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA,
                                        description="Queued, Running, Succeeded, Failed, Validated.")
    progress: TrainingProgress | None = Field(None, description="Live progress from the trainer.")
    artifact: Artifact | None = Field(None, description="The adapter written.")
    validation: ValidationResult | None = Field(None, description="Validation metrics.")
    thermal: ThermalReport | None = Field(None, description="The GPU temperature limit at work, from the trainer.")
    node: str | None = Field(None, description="Node the trainer pod runs on.")
    job_name: str | None = Field(None, description="The Job running the trainer.")
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When the trainer started.")
    completion_time: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When it finished.")
    queued_seconds: float | None = Field(None, description="Seconds the pod waited for a node.")
    message: str | None = Field(None, description="Latest reason, in words.")
    retried_for: str | None = Field(None, max_length=253, description="The PersonalAI's personalai.dev/retry "
                                    "value this run's latest attempt answered.")
