"""One optimizer step over a fixed set of packed rows, split into micro-batches that fit memory.

The loss is summed over every micro-batch and divided by the step's trained tokens, so a step's
gradient is the same whatever the micro-batch size (and after an out-of-memory retry). Also the
held-out loss, computed the same way without gradients.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from personalai_trainer.batching import MicroBatchController
from personalai_trainer.examples import IGNORE_INDEX
from personalai_trainer.modeling import set_gradient_checkpointing
from personalai_trainer.packing import PackedRow, collate_rows, count_trained_tokens

OUT_OF_MEMORY = (torch.OutOfMemoryError,)
MAX_GRAD_NORM = 1.0  # clip: one noisy small-data step should not undo the adapter


@dataclass
class StepResult:
    loss: float
    trained_tokens: int
    seconds: float
    micro_batch: int
    recoveries: list[str]


def to_tensors(batch: dict[str, list[list[int]]], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {key: torch.tensor(value, dtype=torch.long, device=device) for key, value in batch.items()}


def autocast_for(device: torch.device | str, dtype: torch.dtype):
    """bf16 autocast when computing in bf16, on GPU or CPU (LoRA weights stay float32 for the optimizer)."""
    if dtype == torch.bfloat16:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


LOSS_CHUNK_TOKENS = 1024  # answer positions per logits chunk: 1024 x 49k-32k vocabulary floats, not a batch's worth


def summed_loss(model, batch: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Sum of next-token cross-entropy over the labelled positions of one micro-batch.

    Logits are computed only at labelled (answer) positions and a chunk at a time, each chunk
    recomputed in the backward pass instead of stored: a micro-batch's full fp32 logits (rows x
    length x vocabulary) would be the largest tensor of the step, mostly for prompt tokens the
    loss ignores.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    with autocast_for(batch["input_ids"].device, dtype):
        # No attention_mask: transformers derives the block-diagonal (packed) mask from position_ids.
        hidden = causal_lm.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                         use_cache=False).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    selected, targets = hidden[:, :-1][keep], labels[keep]
    head = causal_lm.get_output_embeddings()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), LOSS_CHUNK_TOKENS):
        chunk = slice(start, start + LOSS_CHUNK_TOKENS)
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, head, selected[chunk], targets[chunk], dtype, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, selected[chunk], targets[chunk], dtype)
    return total


def _chunk_loss(head, hidden: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with autocast_for(hidden.device, dtype):
        logits = head(hidden)
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def train_step(
    model, optimizer, rows: list[PackedRow], controller: MicroBatchController, *, pad_id: int, flatten: bool,
    device: torch.device | str, dtype: torch.dtype, learning_rate: float,
) -> StepResult:
    """Forward/backward every row in micro-batches, then one optimizer step; retries smaller on OOM."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    trained_tokens = max(1, count_trained_tokens(rows))
    recoveries: list[str] = []
    started = time.perf_counter()
    while True:
        batch = loss = None
        try:
            total = 0.0
            for start in range(0, len(rows), controller.micro_batch):
                batch = to_tensors(collate_rows(rows[start:start + controller.micro_batch], pad_id, flatten=flatten),
                                   device)
                loss = summed_loss(model, batch, dtype) / trained_tokens
                loss.backward()
                total += loss.item()
            break
        except OUT_OF_MEMORY:
            optimizer.zero_grad(set_to_none=True)  # the partial gradients would be counted twice
            batch = loss = None  # free the failed micro-batch before retrying
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            checkpointing_before = controller.checkpointing
            recoveries.append(controller.on_out_of_memory())
            if controller.checkpointing != checkpointing_before:
                set_gradient_checkpointing(model, controller.checkpointing)
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(total, trained_tokens, time.perf_counter() - started, controller.micro_batch, recoveries)


@torch.no_grad()
def evaluate_loss(model, rows: list[PackedRow], *, pad_id: int, flatten: bool, device, dtype, micro_batch: int) -> float:
    """Mean next-token loss per answer token over held-out rows."""
    if not rows:
        return float("nan")
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(rows), micro_batch):
        batch = to_tensors(collate_rows(rows[start:start + micro_batch], pad_id, flatten=flatten), device)
        total += summed_loss(model, batch, dtype).item()
    model.train(was_training)
    return total / max(1, count_trained_tokens(rows))
