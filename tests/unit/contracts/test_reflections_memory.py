"""personalai_contracts.memory: the index contract between the trainer and the server, and the
choice and rendering of memories in the system prompt."""

from __future__ import annotations

import json
import struct

import pytest

from personalai_contracts import Reflection, memory
from personalai_contracts.memory import MemoryItem, MemorySettings, Recall

pytestmark = pytest.mark.unit

LAKE = Reflection(question="What is your earliest memory?", category="Childhood",
                  answer="Fishing with my father Aldo at Lake Orta in 1961.")
VALUES = Reflection(question="What do you value most?", category="Values", answer="Honesty, even when it costs me.")


def words(text: str) -> int:
    return len(text.split())


def test_ids_are_stable_distinct_and_free_of_text():
    first, again = memory.memory_id(LAKE), memory.memory_id(LAKE.model_copy(update={"category": "Other", "date": "x"}))
    assert first == again  # question and answer name a memory; category and date do not
    assert first.startswith("m-") and len(first) == 14
    assert memory.memory_id(VALUES) != first
    assert "Aldo" not in first and "lake" not in first.lower()


def test_build_items_keeps_order_and_drops_duplicates():
    items = memory.build_items([LAKE, VALUES, LAKE])
    assert [item.question for item in items] == [LAKE.question, VALUES.question]
    assert items[0] == MemoryItem(memory.memory_id(LAKE), LAKE.question, "Childhood", LAKE.answer)
    assert memory.memory_text(items[0]) == f"{LAKE.question} {LAKE.answer}"


def test_write_then_read_round_trips_items_and_float32_rows(tmp_path):
    items = memory.build_items([LAKE, VALUES])
    vectors = [[0.5, -0.25, 1.0], [0.0, 1.0, 0.125]]
    memory.write_index(tmp_path, items, vectors)
    index = json.loads((tmp_path / memory.INDEX_FILE).read_text(encoding="utf-8"))
    assert index["embedder"] == memory.EMBEDDER and index["dimensions"] == 3
    read_items, raw, dimensions = memory.read_index(tmp_path)
    assert read_items == items and dimensions == 3
    assert list(struct.unpack("<6f", raw)) == [0.5, -0.25, 1.0, 0.0, 1.0, 0.125]


def test_read_index_without_files_is_no_memory_and_a_short_vector_file_is_an_error(tmp_path):
    assert memory.read_index(tmp_path) is None
    memory.write_index(tmp_path, memory.build_items([LAKE, VALUES]), [[1.0, 0.0], [0.0, 1.0]])
    (tmp_path / memory.VECTORS_FILE).write_bytes(b"\x00" * 12)
    with pytest.raises(ValueError, match="expected 2 x 2"):
        memory.read_index(tmp_path)
    with pytest.raises(ValueError, match="one embedding per memory item"):
        memory.write_index(tmp_path, memory.build_items([LAKE]), [])


def items_of(count: int) -> list[MemoryItem]:
    return [MemoryItem(f"m-{index}", f"question {index}", "c", "answer " * (index + 1)) for index in range(count)]


def test_choose_takes_the_most_similar_above_the_minimum_up_to_the_maximum():
    items = items_of(5)
    similarities = [0.2, 0.9, 0.5, 0.7, 0.36]
    chosen = memory.choose(items, similarities, MemorySettings(max_memories=2, min_similarity=0.35), words)
    assert chosen.ids == ["m-1", "m-3"] and chosen.similarities == (0.9, 0.7)
    everything = memory.choose(items, similarities, MemorySettings(max_memories=10, min_similarity=0.35), words)
    assert everything.ids == ["m-1", "m-3", "m-2", "m-4"]  # 0.2 is under the minimum
    assert memory.choose(items, [0.1] * 5, MemorySettings(), words).items == ()


def test_choose_skips_what_does_not_fit_the_budget_and_takes_a_shorter_one():
    items = [*items_of(2), MemoryItem("m-long", "question", "c", "word " * 40)]
    budget = words(memory.render_memory(items[1])) + words(memory.render_memory(items[0]))
    chosen = memory.choose(items, [0.4, 0.8, 0.9], MemorySettings(token_budget=budget), words)
    assert chosen.ids == ["m-1", "m-0"]  # m-long, the most similar, is too long for the budget


def test_choose_returns_nothing_when_off_or_at_zero():
    items, similarities = items_of(2), [0.9, 0.8]
    assert memory.choose(items, similarities, MemorySettings(enabled=False), words) == Recall((), ())
    assert memory.choose(items, similarities, MemorySettings(max_memories=0), words).ids == []
    assert memory.choose(items, similarities, MemorySettings(token_budget=0), words).ids == []


def test_prompt_with_memories_without_them_and_with_memory_off():
    items = memory.build_items([LAKE, VALUES])
    recall = Recall((items[0],), (0.8,))
    prompt = memory.system_prompt_with_memories("You are Luke.", recall, MemorySettings())
    assert prompt.startswith("You are Luke.\n\n" + memory.MEMORY_HEADER)
    assert memory.render_memory(items[0]) in prompt and "Aldo" in prompt
    assert VALUES.answer not in prompt and memory.NO_MEMORY_NOTE not in prompt

    empty = memory.system_prompt_with_memories("You are Luke.", Recall((), ()), MemorySettings())
    assert empty == f"You are Luke.\n\n{memory.NO_MEMORY_NOTE}"
    assert memory.system_prompt_with_memories("You are Luke.", recall, MemorySettings(enabled=False)) == "You are Luke."


def test_retrieval_query_adds_the_previous_user_turn_only():
    assert memory.retrieval_query("Where was it?", []) == "Where was it?"
    history = [{"role": "user", "content": "Tell me about the lake"}, {"role": "assistant", "content": "It was cold."},
               {"role": "user", "content": "Who was there?"}, {"role": "assistant", "content": "My father."}]
    assert memory.retrieval_query("And then?", history) == "Who was there? And then?"
