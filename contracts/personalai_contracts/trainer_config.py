"""The trainer's config file: the one schema the operator writes, the trainer reads and the CRDs embed.

The operator builds a `TrainerConfig` from a TrainingRun (`spec.training` and `spec.validation` are
`TrainingConfig` and `ValidationConfig` verbatim, so the CRD schema is generated from these classes),
dumps it as config.json into the run's ConfigMap, and the trainer parses it back with the same
classes. camelCase on the wire, unknown fields refused. Every default says why it is what it is.

    config = TrainerConfig.model_validate(json.loads(text))   # the trainer's config.parse_config
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel

from personalai_contracts.memory import MemorySettings

DEFAULT_BASE_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
# A perplexity-gain threshold at this value is off: it is the lowest the schema accepts.
GAIN_THRESHOLD_OFF = -1.0
MAX_BATCH_SIZE = 512  # packed rows per micro-batch; more fits no GPU


class CamelModel(BaseModel):
    """Spec and config objects: camelCase on the wire, unknown fields refused (the API server prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ---- training ---------------------------------------------------------------------------------

BatchSize = Annotated[
    Literal["auto"] | int,
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "x-kubernetes-validations": [{
            "rule": f"type(self) == int ? (self >= 1 && self <= {MAX_BATCH_SIZE}) : self == 'auto'",
            "message": f'batchSize must be "auto" or an integer from 1 to {MAX_BATCH_SIZE}',
        }],
    }),
]


class LoraConfig(CamelModel):
    """LoRA adapter shape, applied to every linear layer of the base model."""

    rank: int = Field(16, ge=1, le=256, description="LoRA rank r: adapter capacity. 16: enough for one person's "
                      "voice from a few hundred answers; more mostly memorizes them.")
    alpha: float = Field(32, gt=0.0, le=1024.0, description="LoRA alpha; the update is scaled by alpha/rank. "
                         "32 (2 x rank): the QLoRA paper's scaling.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input during training. "
                           "0.05: a little regularization for small datasets, as in QLoRA.")


class ThermalConfig(CamelModel):
    """The GPU temperature limit: the trainer pauses above it and says so (status.thermal, Event GpuThrottled)."""

    enabled: bool = Field(True, description="Act on the GPU temperature (default: on; a run without GPU "
                          "telemetry is never paused).")
    gpu_temperature_limit_celsius: int = Field(83, ge=40, le=110, description="GPU temperature above which "
                                               "training pauses. 83: the RTX 5090's throttle point, so the "
                                               "card never clocks itself down mid-run.")
    resume_margin_celsius: int = Field(5, ge=1, le=30, description="A paused run resumes once the GPU is at "
                                       "least this far below the limit. 5: enough that it does not flap around it.")
    max_pause_seconds: int = Field(600, ge=0, le=86400, description="Longest single pause; after it the run goes "
                                   "on at reduced pace while still hot. 600: a card that has not cooled in ten "
                                   "minutes will not, and the run should still finish.")


class TrainingConfig(CamelModel):
    """How to fine-tune: PersonalAI and TrainingRun `spec.training`, and the trainer config's `training`."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        # has(): the API server also checks this rule against the bare `default: {}`.
        "rule": "!has(self.batchSize) || type(self.batchSize) == int || !has(self.dynamicBatching) || self.dynamicBatching",
        "message": 'batchSize "auto" needs dynamicBatching: the dynamic batcher picks the size',
        "fieldPath": ".batchSize",
    }]})

    epochs: int = Field(4, ge=1, le=100, description="Passes over the training split, at most: the trainer keeps "
                        "the best epoch on held-out data. 4: small datasets stop improving by then.")
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Peak learning rate (AdamW), after warmup. "
                                 "0.0002: the QLoRA paper's rate for 7B models.")
    batch_size: BatchSize = Field("auto", description='Sequences per micro-batch, or "auto" (default) to size it '
                                  "from the free VRAM, which differs between a 5090 busy serving and an idle one.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step. "
                                             "1: packed rows already fill a step on one GPU.")
    warmup_steps: int = Field(10, ge=0, le=100000, description="Linear warmup steps before the peak learning rate. "
                              "10: a run has only a few hundred steps.")
    validation_split: float = Field(0.1, gt=0.0, lt=0.5, description="Fraction of reflections held out for "
                                    "validation. 0.1: enough questions to score, most kept for training.")
    lora: LoraConfig = Field(default_factory=LoraConfig, json_schema_extra={"default": {}},
                             description="LoRA adapter shape.")
    max_seq_length: int = Field(1024, ge=64, le=32768, description="Longest tokenized example; longer ones are "
                                "cut. 1024: a long answer with its question fits; the base model allows 32768.")
    quantization: Literal["nf4", "none"] = Field("nf4", description="Base model weights: 4-bit NF4 (QLoRA, "
                                                 "default: a 7B model trains in 32 GB) or none.")
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto", description="Attention kernel; auto (default) picks FlashAttention 2 when installed on a capable "
        "GPU, else SDPA; eager is the slow reference.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="Recompute activations to save VRAM; auto (default) turns it on only when the "
        "planned batch would not fit, since it costs about a third of the speed.")
    dynamic_batching: bool = Field(True, description="Adjust the micro-batch size to the free VRAM (default: on, "
                                   "so an out-of-memory step retries smaller instead of failing the run).")
    checkpoint_every_steps: int = Field(50, ge=1, le=100000, description="Optimizer steps between checkpoints. "
                                        "50: a preempted run loses minutes, not its progress.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Random seed for the split, shuffling and LoRA init "
                      "(fixed, so a rerun on the same data is reproducible).")
    augment_phrasings: int = Field(2, ge=0, le=8, description="Extra phrasings of each question (0: only the "
                                   "original). 2: the voice carries over to questions asked another way.")
    thermal: ThermalConfig = Field(default_factory=ThermalConfig, json_schema_extra={"default": {}},
                                   description="The GPU temperature limit.")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_is_auto_or_in_range(cls, value: object) -> object:
        """The CEL rule on batchSize, for the trainer's own parsing (the API server checks the CRD's copy)."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_BATCH_SIZE):
            return value
        raise ValueError(f"must be 'auto' or an integer from 1 to {MAX_BATCH_SIZE}")


class ValidationConfig(CamelModel):
    """The bar a new adapter must pass before it replaces the serving one (definitions: docs/validation.md).

    Every metric is measured on held-out reflections the adapter never trained on, for the adapter
    and for baselines (the untouched base model; the base model prompted with a few of the person's
    answers). Defaults pass a real fine-tune and reject the untouched base model and a random one
    (measured with SmolLM2-135M-Instruct on the example reflections; README).
    """

    min_perplexity_gain: float = Field(
        0.2, ge=GAIN_THRESHOLD_OFF, le=1.0, description="Lowest held-out perplexity gain over the base model "
        "accepted: 1 - adapter perplexity / base perplexity (0.2: at least 20% lower; the base model scores 0). "
        "-1 switches it off.")
    min_perplexity_gain_over_in_context: float = Field(
        0.0, ge=GAIN_THRESHOLD_OFF, le=1.0, description="Lowest held-out perplexity gain over the base model "
        "prompted with three of the person's answers (0: tuning must be no worse than few-shot prompting). "
        "-1 switches it off.")
    max_perplexity: float | None = Field(
        None, gt=1.0, le=100000.0, description="Highest held-out perplexity accepted (exp of the mean negative "
        "log-likelihood per token of the person's held-out answers). Unset: no absolute cap, since it depends "
        "on the base model.")
    min_coherence: float = Field(
        0.4, ge=0.0, le=1.0, description="Lowest coherence (0-1) accepted: per held-out answer, relevance to "
        "the question (judged against the person's own answer) times (1 - repeated 3-grams), averaged. "
        "0.4: a random or looping model scores near 0. 0 switches it off.")
    min_personality_consistency: float = Field(
        0.25, ge=0.0, le=1.0, description="Lowest personality consistency (0-1) accepted: mean cosine "
        "similarity (all-MiniLM-L6-v2) between the adapter's answer to a held-out question and the person's. "
        "0.25: unrelated text scores about 0.1. 0 switches it off.")
    min_closer_than_base: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest share of held-out questions on which the adapter's answer "
        "is closer (MiniLM cosine) to the person's real answer than the base model's answer is. Unset: reported "
        "only, since a dozen held-out questions make it noisy.")
    min_attribution: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest attribution accepted: share of held-out questions on which "
        "tuning raised the likelihood of the person's real answer (against the base model) more than that of "
        "each of 3 generic answers to the same question sampled from the base model (chance 0.25). Unset: "
        "reported only.")
    min_knowledge: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest knowledge-probe accuracy accepted: multiple-choice cloze over "
        "names, places and dates in the training answers (chance 0.25). Unset: reported only.")
    max_samples: int = Field(16, ge=1, le=1000, description="Held-out questions every candidate answers. 16: "
                             "generation is validation's cost, and five candidates answer each.")
    max_new_tokens: int = Field(96, ge=8, le=2048, description="Tokens generated per validation answer. 96: long "
                                "enough for a voice, short enough for CPU validation.")
    probes: int = Field(32, ge=0, le=1000, description="Knowledge probes built from the training answers "
                        "(0: none). 32: the accuracy's step is 3%, and they score in seconds.")


# ---- memory, as the chat server will use it -------------------------------------------------------

_MEMORY = MemorySettings()  # the defaults the server and the trainer's evaluation use too
_SIMILARITY = "Lowest cosine similarity (all-MiniLM-L6-v2) between a message and a reflection for it to be recalled"


class MemoryConfig(CamelModel):
    """Memory: the person's own reflections closest to each message, retrieved at chat time into the
    system prompt, so answers rest on what they wrote rather than on what the model invents."""

    enabled: bool = Field(_MEMORY.enabled, description="Put the person's closest reflections into the prompt "
                          "(default: on; adapters trained with a memory index).")
    max_memories: int = Field(_MEMORY.max_memories, ge=0, le=20, description="Most reflections recalled per "
                              "reply. 3: a few answers cover a question; more crowd out the history.")
    token_budget: int = Field(_MEMORY.token_budget, ge=0, le=8000, description="Most prompt tokens the recalled "
                              "reflections take. 600: room for history in a small model's 8k context.")
    min_similarity: float = Field(_MEMORY.min_similarity, ge=0.0, le=1.0, description=f"{_SIMILARITY}; when "
                                  "none reaches it, the prompt says that nothing the person wrote matches. "
                                  "0.35: under it is another topic (related pairs measure 0.4-0.7).")

    def settings(self) -> MemorySettings:
        return MemorySettings(enabled=self.enabled, max_memories=self.max_memories, token_budget=self.token_budget,
                              min_similarity=self.min_similarity)


# ---- the rest of the trainer's config file ------------------------------------------------------

class RunConfig(CamelModel):
    """Which run this is: names for status, metrics and the manifest."""

    name: str = Field(min_length=1, max_length=253)
    namespace: str = "default"  # a trainer run by hand outside a cluster
    personal_ai: str = Field("", alias="personalAI", max_length=63)
    adapter_version: str = Field("v1", max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a first run by hand
    data_version: str = ""  # unknown when run by hand: the manifest records what the operator passed


class PersonaConfig(CamelModel):
    display_name: str = Field(min_length=1, max_length=100)


class PathsConfig(CamelModel):
    """Paths as the trainer pod sees them (the operator's volume layout)."""

    reflections: str
    model_cache: str = "/models"  # the model-cache volume's mount point
    output: str
    checkpoints: str
    current_adapter: str | None = None  # the adapter being served: scored on the same held-out set


class ReportingConfig(CamelModel):
    kubernetes: bool = True  # in a pod: progress goes to the TrainingRun's status
    metrics_port: int = Field(9400, ge=0, le=65535)  # 0: no metrics server; 9400: the trainer container's declared port
    min_interval_seconds: float = Field(5, ge=0)  # status patches at most this often: the API server's load


class TrainerConfig(CamelModel):
    run: RunConfig
    persona: PersonaConfig
    base_model: str = Field(DEFAULT_BASE_MODEL, min_length=1, max_length=253)  # the product's base model
    paths: PathsConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    # Absent: the operator did not say how the adapter will be served; scored with memory, the default.
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)
