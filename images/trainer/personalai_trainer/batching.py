"""How many packed rows go through the model at once (the micro-batch), decided from GPU memory.

The optimizer step always covers the same rows (`rows_per_step`), and the loss is normalised by the
step's trained tokens, so the micro-batch changes speed and memory, never the result. Pure decisions
here; the training loop measures memory and catches out-of-memory errors.

- plan: from free VRAM and an estimate of the model's memory, the largest micro-batch that fits, and
  whether gradient checkpointing is needed at all ("auto": only when not even one row fits without it).
- grow/shrink: after a step, double when the peak used well under the total, halve when near the top.
- out of memory: halve and retry the step; at one row, turn checkpointing on ("auto"), else give up.
"""

from __future__ import annotations

from dataclasses import dataclass

from personalai_contracts.trainer_config import TrainingConfig

GIB = 1024**3
GROW_BELOW = 0.55  # peak use under this fraction of VRAM: a doubled micro-batch still fits
SHRINK_ABOVE = 0.92  # over this the allocator fragments and the next long row may fail
HEADROOM = 0.85  # plan against 85% of free memory (allocator caches, CUDA context, fragmentation)


def rows_per_step(training: TrainingConfig) -> int:
    """Packed rows per optimizer step; fixed for the run so the math does not depend on the GPU."""
    micro = 4 if training.batch_size == "auto" else training.batch_size  # "auto": the design's default of 4
    return micro * training.gradient_accumulation_steps


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden_size: int
    intermediate_size: int
    layers: int
    vocab_size: int
    quantized_4bit: bool

    @classmethod
    def from_config(cls, config, quantized_4bit: bool) -> ModelShape:
        hidden, layers = config.hidden_size, config.num_hidden_layers
        intermediate, vocab = config.intermediate_size, config.vocab_size
        heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        per_layer = hidden * head_dim * (2 * heads + 2 * kv_heads) + 3 * hidden * intermediate
        return cls(per_layer * layers + 2 * vocab * hidden, hidden, intermediate, layers, vocab, quantized_4bit)


def estimate_weight_bytes(shape: ModelShape) -> int:
    """Frozen base weights: about 0.55 bytes a parameter in NF4 with double quantization, else 2 (bf16)."""
    embeddings = 2 * shape.vocab_size * shape.hidden_size * 2  # embeddings and lm_head stay in bf16
    body = shape.parameters - 2 * shape.vocab_size * shape.hidden_size
    return int(body * (0.55 if shape.quantized_4bit else 2)) + embeddings


def estimate_activation_bytes(shape: ModelShape, tokens: int, checkpointing: bool) -> int:
    """Memory that grows with the tokens in a micro-batch (bf16 activations kept for backward, logits)."""
    # Per token per layer without checkpointing: ~10 hidden-sized tensors (norms, q/k/v/o, residuals) and
    # ~4 intermediate-sized ones (gate, up, act, product), 2 bytes each.
    full_layer = (10 * shape.hidden_size + 4 * shape.intermediate_size) * 2
    stored = shape.hidden_size * 2 * shape.layers + full_layer if checkpointing else full_layer * shape.layers
    logits = shape.vocab_size * (2 + 4 + 4)  # bf16 logits, fp32 copy for the loss, its gradient
    return tokens * (stored + logits)


@dataclass(frozen=True)
class BatchPlan:
    micro_batch: int
    checkpointing: bool
    reason: str


def plan_micro_batch(
    *, free_bytes: int | None, shape: ModelShape, row_tokens: int, rows_per_step: int,
    requested: int | str, checkpointing_mode: str, dynamic: bool,
) -> BatchPlan:
    """The micro-batch and checkpointing to start with. `free_bytes` None means no GPU (CPU run)."""
    start = rows_per_step if requested == "auto" else min(int(requested), rows_per_step)
    if free_bytes is None or not dynamic:
        checkpointing = checkpointing_mode == "on"
        return BatchPlan(start, checkpointing, "no GPU memory to measure" if free_bytes is None else "fixed")
    budget = free_bytes * HEADROOM - estimate_weight_bytes(shape)

    def fits(rows: int, checkpointing: bool) -> bool:
        return estimate_activation_bytes(shape, rows * row_tokens, checkpointing) <= budget

    options = {"on": [True], "off": [False], "auto": [False, True]}[checkpointing_mode]
    for checkpointing in options:  # "auto" prefers no recomputation: about a third faster per step
        rows = rows_per_step
        while rows > 1 and not fits(rows, checkpointing):
            rows //= 2
        if fits(rows, checkpointing):
            return BatchPlan(rows, checkpointing, f"fits {rows} rows in {free_bytes / GIB:.1f} GiB free")
    # Nothing fits by the estimate: try the smallest and let out-of-memory recovery decide.
    return BatchPlan(1, checkpointing_mode != "off", "estimate over free memory; starting at one row")


@dataclass
class MicroBatchController:
    """The live micro-batch: grows into spare VRAM, shrinks near the top, halves on out-of-memory."""

    micro_batch: int
    max_micro_batch: int
    checkpointing: bool
    checkpointing_mode: str = "auto"
    dynamic: bool = True

    def after_step(self, peak_fraction: float | None) -> str | None:
        """Adjust after a successful step from its peak memory use (fraction of total); returns what changed."""
        if not self.dynamic or peak_fraction is None:
            return None
        if peak_fraction < GROW_BELOW and self.micro_batch < self.max_micro_batch:
            self.micro_batch = min(self.max_micro_batch, self.micro_batch * 2)
            return f"grew micro-batch to {self.micro_batch}"
        if peak_fraction > SHRINK_ABOVE and self.micro_batch > 1:
            self.micro_batch = max(1, self.micro_batch // 2)
            return f"shrank micro-batch to {self.micro_batch}"
        return None

    def on_out_of_memory(self) -> str:
        """Make the retried step smaller; raises MemoryError when nothing smaller is left to try."""
        if self.micro_batch > 1:
            self.micro_batch //= 2
            # Never grow back into the size that failed.
            self.max_micro_batch = min(self.max_micro_batch, self.micro_batch)
            return f"out of memory: halved micro-batch to {self.micro_batch}"
        if not self.checkpointing and self.checkpointing_mode == "auto":
            self.checkpointing = True
            return "out of memory at one row: turned gradient checkpointing on"
        raise MemoryError("out of GPU memory with a micro-batch of one packed row"
                          + ("" if self.checkpointing else " and gradient checkpointing off")
                          + "; lower training.maxSeqLength or use quantization nf4")
