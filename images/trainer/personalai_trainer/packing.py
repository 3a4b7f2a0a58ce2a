"""Pack tokenized examples into rows of up to `max_length` tokens, with no attention across examples.

Packing wastes no compute on pad tokens. Each row carries position_ids that restart at 0 for every
example: transformers turns that into a block-diagonal causal mask for SDPA/eager (masking_utils'
packed-sequence detection, when no attention_mask is passed) and into variable-length kernels for
FlashAttention 2 (which needs the micro-batch flattened into one row: `collate_rows(flatten=True)`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from personalai_trainer.examples import IGNORE_INDEX, TokenizedExample


@dataclass
class PackedRow:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def add(self, example: TokenizedExample) -> None:
        self.input_ids += example.input_ids
        # The first token of each example has nothing of its own before it: never a target.
        self.labels += [IGNORE_INDEX, *example.labels[1:]]
        self.position_ids += list(range(len(example)))
        self.lengths.append(len(example))

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


def pack_examples(examples: list[TokenizedExample], max_length: int) -> list[PackedRow]:
    """First-fit decreasing: longest examples first, each into the first row with room. Deterministic."""
    rows: list[PackedRow] = []
    order = sorted(range(len(examples)), key=lambda index: (-len(examples[index]), index))
    for index in order:
        example = examples[index]
        if len(example) > max_length:
            raise ValueError(f"example {index} has {len(example)} tokens, over max_length {max_length}")
        row = next((row for row in rows if len(row) + len(example) <= max_length), None)
        if row is None:
            row = PackedRow()
            rows.append(row)
        row.add(example)
    return rows


def shuffle_rows(rows: list[PackedRow], seed: int, epoch: int) -> list[PackedRow]:
    """A different order each epoch, the same order for the same seed (so a resumed run sees the same data)."""
    order = list(rows)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def collate_rows(rows: list[PackedRow], pad_id: int, *, flatten: bool = False) -> dict[str, list[list[int]]]:
    """Plain lists for one micro-batch: [rows, longest] padded, or [1, total] flattened (FlashAttention 2).

    Padding is its own trailing "example" (positions restart at 0, labels ignored), so it attends to
    nothing real and nothing real attends to it.
    """
    if flatten:
        merged = PackedRow()
        for row in rows:
            merged.input_ids += row.input_ids
            merged.labels += [IGNORE_INDEX, *row.labels[1:]]
            merged.position_ids += row.position_ids
        rows = [merged]
    width = max(len(row) for row in rows)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for row in rows:
        pad = width - len(row)
        batch["input_ids"].append(row.input_ids + [pad_id] * pad)
        batch["labels"].append(row.labels + [IGNORE_INDEX] * pad)
        batch["position_ids"].append(row.position_ids + list(range(pad)))
    return batch


def count_trained_tokens(rows: list[PackedRow]) -> int:
    """Targets the loss averages over (after the causal shift): the normaliser for a whole step."""
    return sum(row.trained_tokens for row in rows)
