"""Typed models of the two custom resources, and the one source of their CRD schemas.

`crdgen` turns these models (field descriptions, bounds, enums, defaults and the CEL rules in
`json_schema_extra`) into crds/*.yaml; a unit test keeps the files in step. Handlers parse a
custom resource's spec and status into these models once and pass typed objects inward.
`TrainingConfig` is exactly the `training` object of the trainer config file (docs/contracts.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from personalai_reflections.memory import MemorySettings

GROUP = "personalai.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_BASE_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
# Run names are "<personalai>-<8 hex>" and must stay valid label values (63 characters).
MAX_PERSONALAI_NAME = 45

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"


class CamelModel(BaseModel):
    """Spec objects: camelCase on the wire, unknown fields refused (the API server prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StatusModel(BaseModel):
    """Status objects: camelCase, tolerant of fields a newer writer adds."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# ---- training, as the trainer reads it -------------------------------------------------------

BatchSize = Annotated[
    Literal["auto"] | int,
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "description": 'Sequences per micro-batch, or "auto" to size it from free VRAM.',
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? (self >= 1 && self <= 512) : self == 'auto'",
            "message": 'batchSize must be "auto" or an integer from 1 to 512',
        }],
    }),
]


class LoraConfig(CamelModel):
    """LoRA adapter shape, applied to every linear layer of the base model."""

    rank: int = Field(16, ge=1, le=256, description="LoRA rank r: adapter capacity.")
    alpha: float = Field(32, gt=0.0, le=1024.0, description="LoRA alpha; the update is scaled by alpha/rank.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input during training.")


class TrainingConfig(CamelModel):
    """How to fine-tune: the `training` object of the trainer's config file, with its defaults."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        # has(): the API server also checks this rule against the bare `default: {}`.
        "rule": "!has(self.batchSize) || type(self.batchSize) == int || !has(self.dynamicBatching) || self.dynamicBatching",
        "message": 'batchSize "auto" needs dynamicBatching: the dynamic batcher picks the size',
        "fieldPath": ".batchSize",
    }]})

    epochs: int = Field(4, ge=1, le=100, description="Passes over the training split.")
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Peak learning rate (AdamW), after warmup.")
    batch_size: BatchSize = "auto"
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    warmup_steps: int = Field(10, ge=0, le=100000, description="Linear warmup steps before the peak learning rate.")
    validation_split: float = Field(0.1, gt=0.0, lt=0.5, description="Fraction of reflections held out for validation.")
    lora: LoraConfig = Field(default_factory=LoraConfig, json_schema_extra={"default": {}},
                             description="LoRA adapter shape.")
    max_seq_length: int = Field(1024, ge=64, le=32768, description="Longest tokenized example; longer ones are cut.")
    quantization: Literal["nf4", "none"] = Field("nf4", description="Base model weights: 4-bit NF4 (QLoRA) or none.")
    attention: Literal["auto", "flash_attention_2", "sdpa"] = Field(
        "auto", description="Attention kernel; auto picks FlashAttention 2 when installed, else SDPA.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="Recompute activations to save VRAM; auto turns it on when memory needs it.")
    dynamic_batching: bool = Field(True, description="Adjust the micro-batch size to the free VRAM.")
    checkpoint_every_steps: int = Field(50, ge=1, le=100000, description="Optimizer steps between checkpoints.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Random seed for the split, shuffling and LoRA init.")
    augment_phrasings: int = Field(2, ge=0, le=8, description="Extra phrasings of each question (0: only the original).")


class ValidationThresholds(CamelModel):
    """The bar a new adapter must pass before it replaces the serving one (definitions: docs/validation.md).

    Every metric is measured on held-out reflections the adapter never trained on, for the adapter
    and for baselines (the untouched base model; the base model prompted with a few of the person's
    answers). Defaults pass a real fine-tune and reject the untouched base model and a random one.
    """

    min_perplexity_gain: float = Field(
        0.2, ge=-1.0, le=1.0, description="Lowest held-out perplexity gain over the base model accepted: "
        "1 - adapter perplexity / base perplexity (0.2: at least 20% lower). -1 switches it off.")
    min_perplexity_gain_over_in_context: float = Field(
        0.0, ge=-1.0, le=1.0, description="Lowest held-out perplexity gain over the base model prompted with three of "
        "the person's answers (0: no worse than that). -1 switches it off.")
    max_perplexity: float | None = Field(
        None, gt=1.0, le=100000.0, description="Highest held-out perplexity accepted (exp of the mean negative "
        "log-likelihood per token of the person's held-out answers). Unset: no absolute cap, since it depends "
        "on the base model.")
    min_coherence: float = Field(
        0.4, ge=0.0, le=1.0, description="Lowest coherence (0-1) accepted: per held-out answer, relevance to "
        "the question (judged against the person's own answer) times (1 - repeated 3-grams), averaged.")
    min_personality_consistency: float = Field(
        0.25, ge=0.0, le=1.0, description="Lowest personality consistency (0-1) accepted: mean cosine "
        "similarity (all-MiniLM-L6-v2) between the adapter's answer to a held-out question and the person's.")
    min_closer_than_base: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest share of held-out questions on which the adapter's answer "
        "is closer (MiniLM cosine) to the person's real answer than the base model's answer is. Unset: reported only.")
    min_attribution: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest attribution accepted: share of held-out questions on which "
        "tuning raised the likelihood of the person's real answer (against the base model) more than that of "
        "each of 3 generic answers to the same question sampled from the base model (chance 0.25). Unset: "
        "reported only.")
    min_knowledge: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest knowledge-probe accuracy accepted: multiple-choice cloze over "
        "names, places and dates in the training answers (chance 0.25). Unset: reported only.")
    max_samples: int = Field(16, ge=1, le=1000, description="Held-out questions every candidate answers.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Tokens generated per validation answer.")
    probes: int = Field(32, ge=0, le=1000, description="Knowledge probes built from the training answers.")


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

_MEMORY = MemorySettings()  # the defaults the server and the trainer's evaluation use too
_SIMILARITY = "Lowest cosine similarity (all-MiniLM-L6-v2) between a message and a reflection for it to be recalled"


class MemoryConfig(CamelModel):
    """Memory: the person's own reflections closest to each message, retrieved at chat time into the
    system prompt, so answers rest on what they wrote rather than on what the model invents."""

    enabled: bool = Field(_MEMORY.enabled, description="Put the person's closest reflections into the prompt "
                          "(adapters trained with a memory index).")
    max_memories: int = Field(_MEMORY.max_memories, ge=0, le=20, description="Most reflections recalled per reply.")
    token_budget: int = Field(_MEMORY.token_budget, ge=0, le=8000,
                              description="Most prompt tokens the recalled reflections take.")
    min_similarity: float = Field(_MEMORY.min_similarity, ge=0.0, le=1.0, description=f"{_SIMILARITY}; when "
                                  "none reaches it, the prompt says that nothing the person wrote matches.")


class MemoryOverride(CamelModel):
    """A personality mode's changes to serving.memory; a field left out keeps serving.memory's value."""

    enabled: bool | None = Field(None, description="Put the person's closest reflections into this mode's prompts.")
    max_memories: int | None = Field(None, ge=0, le=20, description="Most reflections recalled per reply.")
    token_budget: int | None = Field(None, ge=0, le=8000, description="Most prompt tokens the recalled reflections take.")
    min_similarity: float | None = Field(None, ge=0.0, le=1.0, description=f"{_SIMILARITY}.")


class PersonalityMode(CamelModel):
    """One way the AI can speak: its system prompt and sampling."""

    system_prompt: str = Field(min_length=1, max_length=8000, description="System prompt for this mode.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature; default: serving.temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling top-p.")
    description: str | None = Field(None, max_length=500, description="What the mode is for, shown to the user.")
    memory: MemoryOverride | None = Field(None, description="This mode's changes to serving.memory.")


class ServingConfig(CamelModel):
    """How the trained model is served for chat."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!has(self.defaultMode) || (has(self.personalityModes) && self.defaultMode in self.personalityModes)",
        "message": "defaultMode must name one of personalityModes",
        "fieldPath": ".defaultMode",
    }, {
        "rule": "!has(self.engineUrl) || (has(self.engine) && self.engine != 'local')",
        "message": "engineUrl is only used with engine tgi or vllm",
        "fieldPath": ".engineUrl",
    }]})

    enabled: bool = Field(True, description="Run a chat server once an adapter has passed validation.")
    engine: Literal["local", "tgi", "vllm"] | None = Field(
        None, description="Inference engine; default: the operator's setting. local: in-process transformers+peft.")
    engine_url: str | None = Field(None, max_length=2048, pattern=r"^https?://",
                                   description="Base URL of an existing TGI or vLLM server.")
    adapter_version: str | None = Field(None, max_length=63,
                                        description="Pin this adapter version (rollback); default: the newest that passed.")
    personality_modes: dict[str, PersonalityMode] = Field(
        default_factory=dict, max_length=16, json_schema_extra={"maxProperties": 16},
        description="Named personality modes.")
    default_mode: str | None = Field(None, max_length=63, description="The mode used when a chat names none.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default sampling temperature.")
    max_tokens: int = Field(256, ge=1, le=8192, description="Most tokens generated per reply.")
    history_window: int = Field(10, ge=0, le=200, description="Earlier messages kept in the prompt.")
    memory: MemoryConfig = Field(default_factory=MemoryConfig,
                                 description="Recall of the person's own reflections into the prompt at chat time.")


class RetentionConfig(CamelModel):
    """How long data made from the reflections is kept (0: until the PersonalAI is deleted)."""

    session_days: int = Field(30, ge=0, le=3650, description="Days to keep chat sessions.")
    artifact_days: int = Field(90, ge=0, le=3650, description="Days to keep adapters that are not serving.")


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


CONDITIONS_SCHEMA = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"], "maxItems": 16}


class DataAssessmentStatus(StatusModel):
    """How much the person has written and what is missing (personalai_reflections.assess_readiness)."""

    responses: int = Field(0, description="Answered reflections.")
    average_words: float = Field(0.0, description="Average words per answer.")
    categories: int = Field(0, description="Distinct categories.")
    total_words: int = Field(0, description="Words in all answers.")
    level: Literal["insufficient", "minimum", "optimal"] = Field("insufficient", description="Readiness level reached.")
    missing: list[str] = Field(default_factory=list, description='What is short of the next level, e.g. "14 of 20 responses".')
    message: str = Field("", description="One-line summary.")
    data_version: str | None = Field(None, description="sha256 of the reflections assessed.")


class FidelityMetrics(StatusModel):
    """One candidate's scores on the held-out set (definitions: spec.validation, docs/validation.md)."""

    perplexity: float | None = Field(None, description="Held-out perplexity of the person's answers.")
    coherence: float | None = Field(None, description="Coherence, 0-1.")
    personality_consistency: float | None = Field(None, description="Similarity to the person's own answers, 0-1.")
    attribution: float | None = Field(None, description="Share of questions where the real answer ranks above generic ones.")
    knowledge: float | None = Field(None, description="Knowledge-probe accuracy, 0-1 (chance 0.25).")
    version: str | None = Field(None, description="Adapter version, for the 'current' baseline.")


class ValidationResult(FidelityMetrics):
    """The adapter's validation: its metrics, its gains over the baselines, and the gate's verdict."""

    eval_loss: float | None = Field(None, description="Held-out loss (mean negative log-likelihood per token).")
    perplexity_gain: float | None = Field(None, description="1 - adapter perplexity / base model perplexity.")
    perplexity_gain_over_in_context: float | None = Field(
        None, description="1 - adapter perplexity / the in-context baseline's perplexity.")
    closer_than_base: float | None = Field(None, description="Share of held-out answers closer to the person's than the base model's.")
    closer_than_in_context: float | None = Field(None, description="The same against the base model prompted in context.")
    held_out_questions: int | None = Field(None, description="Held-out questions scored.")
    knowledge_probes: int | None = Field(None, description="Knowledge probes scored.")
    selected_epoch: int | None = Field(None, description="The epoch whose weights the run kept.")
    memory: bool | None = Field(None, description="Whether the adapter (and base, current) were scored with memory, "
                                "as they will be served.")
    baselines: dict[str, FidelityMetrics] = Field(
        default_factory=dict, description="The same metrics for base (the untouched base model), inContext (the base "
        "model shown three of the person's answers), current (the adapter served when the run started), and with "
        "memory on, adapterWithoutMemory and baseWithoutMemory.")
    passed: bool | None = Field(None, description="Whether every threshold was met.")
    reasons: list[str] = Field(default_factory=list, description="Which thresholds were missed.")


class TrainingProgress(StatusModel):
    """Live progress the trainer patches in (fields from the trainer contract; unknown ones kept)."""

    model_config = ConfigDict(extra="allow")

    epoch: float | None = Field(None, description="Current epoch, fractional.")
    total_epochs: int | None = Field(None, description="Epochs planned.")
    step: int | None = Field(None, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    percent: int | None = Field(None, description="Percent complete, 0-100.")
    loss: float | None = Field(None, description="Recent training loss.")
    eval_loss: float | None = Field(None, description="Latest held-out loss.")
    tokens_per_second: float | None = Field(None, description="Training throughput.")
    eta: str | None = Field(None, description='Time left, e.g. "3m20s".')
    eta_seconds: int | None = Field(None, description="Time left in seconds.")
    micro_batch_size: int | None = Field(None, description="Micro-batch size in use.")
    gpu_utilization: int | None = Field(None, description="GPU utilization, percent.")
    vram_used_mi_b: int | None = Field(None, alias="vramUsedMiB", description="VRAM in use, MiB.")
    gpu_temperature_c: int | None = Field(None, alias="gpuTemperatureC", description="GPU temperature, Celsius.")
    updated_at: str | None = Field(None, description="When the trainer last reported (RFC 3339).")


class Artifact(StatusModel):
    """Where the adapter was written."""

    location: str | None = Field(None, description="Adapter directory as the trainer pod sees it.")
    manifest_sha256: str | None = Field(None, description="sha256 of the adapter's manifest.json.")
    adapter_version: str | None = Field(None, description="Adapter version written.")


class AdapterRecord(StatusModel):
    """A trained adapter: promoted (current or earlier), or rejected with the reason."""

    version: str = Field(description="Adapter version.")
    training_run: str | None = Field(None, description="The TrainingRun that produced it.")
    location: str | None = Field(None, description="Adapter directory on the artifacts volume.")
    data_version: str | None = Field(None, description="sha256 of the reflections it was trained on.")
    metrics: ValidationResult | None = Field(None, description="Its validation metrics.")
    promoted_at: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When it became current.")
    rejected: str | None = Field(None, max_length=2048, description="Why it was not promoted: the gate's missed "
                                 "thresholds, or the metric on which it was worse than the current adapter.")


# ---- PersonalAI ----------------------------------------------------------------------------

class PersonalAISpec(CamelModel):
    """What the person wants: their reflections, how to train on them and how to serve the result."""

    display_name: str = Field(min_length=1, max_length=100, description="The name the AI answers to.")
    reflections: ReflectionsSource = Field(description="Where the person's reflections are.")
    base_model: str = Field(DEFAULT_BASE_MODEL, min_length=1, max_length=253,
                            description="Hugging Face id or local directory of the base model.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, json_schema_extra={"default": {}},
                                     description="Fine-tuning settings.")
    validation: ValidationThresholds = Field(default_factory=ValidationThresholds, json_schema_extra={"default": {}},
                                             description="Thresholds a new adapter must pass.")
    serving: ServingConfig = Field(default_factory=ServingConfig, json_schema_extra={"default": {}},
                                   description="Chat serving settings.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, json_schema_extra={"default": {}},
                                       description="How long derived data is kept.")


class PersonalAIStatus(StatusModel):
    """What the operator observed and did."""

    phase: Literal["Pending", "AwaitingData", "Training", "Trained", "Serving", "Failed"] | None = Field(
        None, description="Summary of the conditions.")
    observed_generation: int | None = Field(None, description="The .metadata.generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_SCHEMA,
                                        description="DataReady, Trained, Serving, Ready.")
    data_assessment: DataAssessmentStatus | None = Field(None, description="Readiness of the reflections.")
    latest_training_run: str | None = Field(None, description="The TrainingRun for the current data and config.")
    current_adapter: AdapterRecord | None = Field(None, description="The adapter being served.")
    adapter_history: list[AdapterRecord] = Field(default_factory=list, json_schema_extra={"maxItems": 100},
                                                 description="Earlier adapters, newest first, for rollback.")
    endpoint: str | None = Field(None, description="URL of the chat server.")


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
                            description="Hugging Face id or local directory of the base model.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, json_schema_extra={"default": {}},
                                     description="The resolved training settings.")
    validation: ValidationThresholds = Field(default_factory=ValidationThresholds, json_schema_extra={"default": {}},
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
    node: str | None = Field(None, description="Node the trainer pod runs on.")
    job_name: str | None = Field(None, description="The Job running the trainer.")
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When the trainer started.")
    completion_time: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When it finished.")
    queued_seconds: float | None = Field(None, description="Seconds the pod waited for a node.")
    message: str | None = Field(None, description="Latest reason, in words.")
