"""Memory in the server without a model: config merging, the index as loaded from an adapter folder,
the choice of memories, and the service's prompt (a word-hashing embedder stands in for MiniLM)."""

from __future__ import annotations

import asyncio
import hashlib
import re

import numpy as np
import pytest

from personalai_contracts import Reflection
from personalai_contracts import memory as contract
from personalai_contracts.artifacts import write_manifest
from personalai_contracts.memory import MemorySettings
from personalai_server.adapters import verify_adapter
from personalai_server.auth import Principal
from personalai_server.config import ConfigError, memory_settings, parse_config
from personalai_server.engines.base import AdapterError, Engine
from personalai_server.engines.tokenizers import EstimatingTokenizer
from personalai_server.memory import (
    MAX_CANDIDATES,
    Embedder,
    Memories,
    MemoryIndex,
    candidates,
    read_memory_index,
    select,
)
from personalai_server.metrics import ServerMetrics
from personalai_server.service import ChatService
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit

MINIMAL = {"persona": {"displayName": "Luke", "personalAI": "luke"}, "engine": {"baseModel": "/models/tiny"}}
REFLECTIONS = [
    Reflection(question="What is your earliest memory?", category="Childhood",
               answer="Fishing with my father Aldo at Lake Orta, the boat painted green."),
    Reflection(question="Where did you meet your wife?", category="Love",
               answer="At a dance in Novara, Marta wore a yellow dress."),
    Reflection(question="What was your first job?", category="Career",
               answer="Sweeping the floor of the Bertolini bakery at five in the morning."),
]
DIMENSIONS = 64


def embed(text: str) -> np.ndarray:
    """Words hashed into buckets, normalised: texts sharing words are close, as with a real embedder."""
    vector = np.zeros(DIMENSIONS, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    return vector / (np.linalg.norm(vector) or 1.0)


class WordModel:
    def encode(self, texts, **_):
        return np.stack([embed(text) for text in texts])

    def get_sentence_embedding_dimension(self):
        return DIMENSIONS


class WordEmbedder(Embedder):
    def __init__(self):
        super().__init__()
        self.queries = 0

    async def load(self):
        self.model = self.model or WordModel()

    def encode_now(self, text):
        self.queries += 1
        return super().encode_now(text)


def write_adapter(directory, reflections=REFLECTIONS, version="v1"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text("{}")
    (directory / "adapter_model.safetensors").write_bytes(b"weights")
    items = contract.build_items(reflections)
    contract.write_index(directory, items, [embed(contract.memory_text(item)).tolist() for item in items])
    write_manifest(directory, adapter_version=version, base_model="/m", data_version="sha256:x", config={}, metrics={})
    return items


# --- config -------------------------------------------------------------------------------------

def test_conversation_memory_defaults_are_the_contracts():
    config = parse_config(MINIMAL)
    mode = config.conversation.personality_modes["wise"]
    assert memory_settings(config.conversation, mode) == MemorySettings()


def test_a_modes_memory_override_wins_field_by_field_and_a_session_can_switch_it_off():
    config = parse_config({**MINIMAL, "conversation": {
        "memory": {"maxMemories": 5, "tokenBudget": 300, "minSimilarity": 0.5},
        "personalityModes": {"wise": {"systemPrompt": "You are {displayName}.", "memory": {"maxMemories": 1}},
                             "playful": {"systemPrompt": "Hi.", "memory": {"enabled": False}},
                             "plain": {"systemPrompt": "Hello."}}}})
    conversation = config.conversation
    wise = memory_settings(conversation, conversation.personality_modes["wise"])
    assert wise == MemorySettings(enabled=True, max_memories=1, token_budget=300, min_similarity=0.5)
    assert not memory_settings(conversation, conversation.personality_modes["playful"]).enabled
    assert memory_settings(conversation, conversation.personality_modes["plain"]).max_memories == 5
    off = memory_settings(conversation, conversation.personality_modes["wise"], session_memory=False)
    assert off == MemorySettings(enabled=False, max_memories=1, token_budget=300, min_similarity=0.5)


@pytest.mark.parametrize("memory, field", [
    ({"maxMemories": 21}, "conversation.memory.maxMemories"),
    ({"tokenBudget": 8001}, "conversation.memory.tokenBudget"),
    ({"minSimilarity": 1.5}, "conversation.memory.minSimilarity"),
    ({"recall": True}, "conversation.memory.recall"),
])
def test_bad_memory_config_names_the_field(memory, field):
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, "conversation": {"memory": memory}})
    assert field in str(raised.value)


def test_a_bad_mode_override_names_the_field():
    with pytest.raises(ConfigError, match=r"personalityModes.wise.memory.minSimilarity"):
        parse_config({**MINIMAL, "conversation": {"personalityModes": {
            "wise": {"systemPrompt": "x", "memory": {"minSimilarity": -0.1}}}}})


# --- the index from the adapter folder -----------------------------------------------------------

def test_index_is_read_into_a_float32_matrix_after_the_manifest_check(tmp_path):
    items = write_adapter(tmp_path / "v1")
    index = read_memory_index(tmp_path / "v1", "v1")
    assert index.items == items and index.matrix.dtype == np.float32 and index.matrix.shape == (3, DIMENSIONS)
    assert np.allclose(index.matrix[1], embed(contract.memory_text(items[1])))


def test_an_adapter_without_memory_files_has_no_memory(tmp_path):
    (tmp_path / "v1").mkdir()
    assert read_memory_index(tmp_path / "v1", "v1") is None


def test_memory_files_that_differ_from_the_manifest_are_refused_without_their_text(tmp_path):
    write_adapter(tmp_path / "v1")
    index_file = tmp_path / "v1" / contract.INDEX_FILE
    index_file.write_text(index_file.read_text().replace("Aldo", "Bruno"))
    with pytest.raises(AdapterError, match="memory.json does not match its manifest") as raised:
        read_memory_index(tmp_path / "v1", "v1")
    assert "Bruno" not in str(raised.value) and "Aldo" not in str(raised.value)


def test_memory_files_the_manifest_does_not_list_are_refused(tmp_path):
    directory = tmp_path / "v1"
    directory.mkdir()
    (directory / "adapter_config.json").write_text("{}")
    write_manifest(directory, adapter_version="v1", base_model="/m", data_version="x", config={}, metrics={})
    items = contract.build_items(REFLECTIONS)
    contract.write_index(directory, items, [embed(contract.memory_text(i)).tolist() for i in items])
    with pytest.raises(AdapterError, match="does not match its manifest"):
        read_memory_index(directory, "v1")


def test_the_engines_adapter_check_covers_the_memory_files(tmp_path):
    write_adapter(tmp_path / "v1")
    assert {"memory.json", "memory.f32"} <= set(verify_adapter(tmp_path / "v1", "v1")["files"])
    with (tmp_path / "v1" / contract.VECTORS_FILE).open("r+b") as vectors:
        vectors.write(b"\x01\x02\x03\x04")
    with pytest.raises(AdapterError, match="memory.f32 has sha256"):
        verify_adapter(tmp_path / "v1", "v1")
    unlisted = tmp_path / "v2"
    unlisted.mkdir()
    (unlisted / "adapter_config.json").write_text("{}")
    (unlisted / "adapter_model.safetensors").write_bytes(b"weights")
    write_manifest(unlisted, adapter_version="v2", base_model="/m", data_version="x", config={}, metrics={})
    items = contract.build_items(REFLECTIONS)
    contract.write_index(unlisted, items, [embed(contract.memory_text(i)).tolist() for i in items])
    with pytest.raises(AdapterError, match="files the manifest does not list: memory.f32, memory.json"):
        verify_adapter(unlisted, "v2")


# --- choosing -----------------------------------------------------------------------------------

def index_of(count: int, dimensions: int = 8) -> MemoryIndex:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(count, dimensions)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    items = [contract.MemoryItem(f"m-{i}", f"q{i}", "c", f"answer {i}") for i in range(count)]
    return MemoryIndex("v1", items, matrix)


def test_candidates_are_those_above_the_minimum_best_first_and_capped():
    index = index_of(200)
    query = index.matrix[7]
    scores = index.matrix @ query
    items, similarities = candidates(index, scores, MemorySettings(min_similarity=-1.0))
    assert len(items) == MAX_CANDIDATES and items[0].id == "m-7"
    assert similarities == sorted(similarities, reverse=True)
    assert sorted(scores, reverse=True)[:MAX_CANDIDATES] == pytest.approx(similarities)
    high, _ = candidates(index, scores, MemorySettings(min_similarity=0.99))
    assert [item.id for item in high] == ["m-7"]


def test_select_finds_the_nearest_counts_each_memory_once_and_respects_settings():
    index = index_of(50)
    counted = []

    def count(text):
        counted.append(text)
        return len(text.split())

    settings = MemorySettings(max_memories=2, min_similarity=0.2)
    first = select(index, index.matrix[3], settings, count)
    assert first.ids[0] == "m-3" and first.similarities[0] == pytest.approx(1.0)
    calls = len(counted)
    assert select(index, index.matrix[3], settings, count) == first and len(counted) == calls  # cached
    assert select(index, index.matrix[3], MemorySettings(enabled=False), count).ids == []
    assert select(index, -index.matrix[3], MemorySettings(min_similarity=0.99), count).ids == []


# --- the store and the service -------------------------------------------------------------------

class StubEngine(Engine):
    """Counts like an engine and holds adapters by name; generates nothing (no turn is generated)."""

    kind = "stub"

    def __init__(self, context_length: int = 4096):
        super().__init__()
        self.tokenizer = EstimatingTokenizer(context_length)
        self.ready = True
        self.held: list[str] = []

    async def start(self, adapter_version):
        await self.activate_adapter(adapter_version)

    def stream(self, messages, params, stats):
        raise NotImplementedError

    async def ensure_adapter(self, version):
        if version not in self.held:
            self.held.append(version)

    def loaded_adapters(self):
        return list(self.held)


def make_service(tmp_path, conversation=None, context_length=4096):
    config = parse_config({**MINIMAL, "adapter": {"dir": str(tmp_path / "artifacts")},
                           "storage": {"dataDir": str(tmp_path / "data")},
                           **({"conversation": conversation} if conversation else {})})
    return ChatService(config, SessionStore(config.storage.data_dir), StubEngine(context_length), ServerMetrics(),
                       Memories(WordEmbedder()))


async def turn_for(service, text, settings=None):
    principal = Principal("owner-1")
    session = service.store.create_session(principal.owner, "t", settings or {})
    return await service.build_turn(principal, session, text)


def test_a_turn_gets_the_closest_memory_and_only_its_id_goes_into_the_metadata(tmp_path):
    items = write_adapter(tmp_path / "artifacts" / "v1")
    service = make_service(tmp_path)

    async def run():
        await service.engine.activate_adapter("v1")
        await service.load_memory("v1")
        return await turn_for(service, "Tell me about fishing with your father at the lake")

    turn = asyncio.run(run())
    system = turn.messages[0]["content"]
    assert turn.memories[0] == items[0].id
    assert contract.MEMORY_HEADER in system and "Aldo" in system and contract.NO_MEMORY_NOTE not in system
    assert "fishing" not in system.split(contract.MEMORY_HEADER)[0].lower()  # user text is never the prompt


def test_nothing_close_means_the_note_and_no_memory_text(tmp_path):
    write_adapter(tmp_path / "artifacts" / "v1")
    service = make_service(tmp_path)

    async def run():
        await service.engine.activate_adapter("v1")
        return await turn_for(service, "Quantum chromodynamics homework, please?")

    turn = asyncio.run(run())
    system = turn.messages[0]["content"]
    assert turn.memories == [] and system.endswith(contract.NO_MEMORY_NOTE)
    assert not any(name in system for name in ("Aldo", "Orta", "Marta", "Novara", "Bertolini"))


def test_a_session_with_memory_off_does_not_embed_and_gets_the_plain_prompt(tmp_path):
    write_adapter(tmp_path / "artifacts" / "v1")
    service = make_service(tmp_path)

    async def run():
        await service.engine.activate_adapter("v1")
        await service.load_memory("v1")
        return await turn_for(service, "Tell me about fishing at the lake", {"memory": False})

    turn = asyncio.run(run())
    assert turn.memories == [] and service.memories.embedder.queries == 0
    assert contract.NO_MEMORY_NOTE not in turn.messages[0]["content"] and "Aldo" not in turn.messages[0]["content"]


def test_without_an_index_or_an_adapter_the_prompt_is_as_configured(tmp_path):
    (tmp_path / "artifacts" / "v1").mkdir(parents=True)
    service = make_service(tmp_path)

    async def run():
        base = await turn_for(service, "Tell me about the lake")  # no adapter: the base model
        await service.engine.activate_adapter("v1")
        return base, await turn_for(service, "Tell me about the lake")

    base, plain = asyncio.run(run())
    assert base.messages[0] == plain.messages[0] and contract.NO_MEMORY_NOTE not in plain.messages[0]["content"]
    assert service.memories.indexes == {"v1": None} and service.memories.embedder.model is None


def test_memories_that_push_the_message_past_the_context_are_dropped_not_refused(tmp_path):
    long = [Reflection(question="What was the lake like?", category="Childhood", answer="lake " * 400)]
    write_adapter(tmp_path / "artifacts" / "v1", long)
    service = make_service(tmp_path, {"memory": {"tokenBudget": 8000}, "maxTokens": 16}, context_length=600)

    async def run():
        await service.engine.activate_adapter("v1")
        return await turn_for(service, "What was the lake like?")

    turn = asyncio.run(run())
    assert turn.memories == [] and turn.messages[0]["content"].endswith(contract.NO_MEMORY_NOTE)


def test_switching_versions_switches_index_and_forgets_versions_no_longer_held(tmp_path):
    write_adapter(tmp_path / "artifacts" / "v1")
    other = [Reflection(question="What is your favourite food?", category="Taste", answer="Risotto with saffron.")]
    v2_items = write_adapter(tmp_path / "artifacts" / "v2", other, version="v2")
    service = make_service(tmp_path)

    async def run():
        await service.engine.activate_adapter("v1")
        await service.load_memory("v1")
        await service.load_memory("v2")
        await service.engine.activate_adapter("v2")
        service.engine.held.remove("v1")
        await service.load_memory("v2")
        return await turn_for(service, "What food do you like, risotto?")

    turn = asyncio.run(run())
    assert turn.memories == [v2_items[0].id] and set(service.memories.indexes) == {"v2"}


def test_an_index_whose_dimensions_differ_from_the_embedder_is_refused(tmp_path):
    directory = tmp_path / "artifacts" / "v1"
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text("{}")
    items = contract.build_items(REFLECTIONS)
    contract.write_index(directory, items, [[1.0, 0.0]] * len(items))
    write_manifest(directory, adapter_version="v1", base_model="/m", data_version="x", config={}, metrics={})
    service = make_service(tmp_path)
    with pytest.raises(AdapterError, match="2 dimensions, the embedder 64"):
        asyncio.run(service.load_memory("v1"))
