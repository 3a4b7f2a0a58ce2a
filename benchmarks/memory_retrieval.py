"""What memory adds to a chat turn: 1,000 synthetic reflections, the real all-MiniLM-L6-v2, in process.

    .venv/bin/python benchmarks/memory_retrieval.py [--reflections 1000] [--turns 300]

Writes an adapter folder holding a memory index of --reflections generated reflections (embedded with
the real MiniLM, as the trainer does, and listed in a manifest), serves it from a ChatService whose
stand-in engine has the tiny Mistral tokenizer (so choosing memories counts real tokens), and times
ChatService.build_turn, the step every chat route runs before generating, for --turns questions:
each once in a session with memory on and once in one with memory off, in alternating order, so both
see the same machine load. The difference per turn is what retrieval adds (embed the query, one
matrix-vector product, choose, render). Prints p50/p99 of both, of the difference and of the query
embedding alone, and the ratio. Goal: p99 added <= 20 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

VERSION = "bench-v1"

PEOPLE = ["my father", "my mother", "my sister Clara", "my brother Tom", "my wife Anna", "my friend Marco",
          "my grandmother", "my son Luca", "my teacher Mrs. Bell", "my old boss Frank"]
PLACES = ["the lake", "Turin", "our farm", "the seaside", "the mountains", "a small café", "the factory",
          "the church hall", "Paris", "the old railway station", "the garden", "the hospital"]
THINGS = ["fishing", "dancing", "baking bread", "fixing bicycles", "singing in the choir", "reading novels",
          "playing chess", "walking in the rain", "painting the house", "learning English", "driving a tractor",
          "building a boat", "writing letters", "planting tomatoes"]
FEELINGS = ["happy", "scared", "proud", "lonely", "grateful", "restless", "calm", "ashamed", "free", "curious"]
QUESTIONS = {
    "Childhood": ["What is a favourite memory from your childhood?", "What games did you play as a child?",
                  "Where did you grow up?"],
    "Family": ["Who in your family shaped you most?", "What did your parents teach you?",
               "What do you remember about your grandparents?"],
    "Love": ["How did you meet the love of your life?", "What does love mean to you?"],
    "Career": ["What was your first job?", "What work made you proudest?", "What would you tell a young worker?"],
    "Values": ["What do you value most?", "What is a mistake you learned from?", "What are you grateful for?"],
    "Travel": ["Where is the most beautiful place you have been?", "What trip changed you?"],
}
UNRELATED = ["How does a blockchain reach consensus?", "What is the boiling point of nitrogen?",
             "Can you recommend a smartphone?", "Explain quantum entanglement simply.",
             "What is the capital of Australia?"]


def synthetic_reflections(count: int, rng: random.Random):
    from personalai_contracts import Reflection

    reflections = []
    for index in range(count):
        category = rng.choice(sorted(QUESTIONS))
        question = rng.choice(QUESTIONS[category])
        answer = (f"I remember {rng.choice(THINGS)} with {rng.choice(PEOPLE)} at {rng.choice(PLACES)} in "
                  f"{rng.randint(1950, 2015)}. I felt {rng.choice(FEELINGS)}, and later {rng.choice(THINGS)} "
                  f"taught me to be {rng.choice(FEELINGS)} too. (note {index})")
        reflections.append(Reflection(question=question, category=category, answer=answer))
    return reflections


def turn_questions(count: int, rng: random.Random) -> list[str]:
    questions = []
    for _ in range(count):
        if rng.random() < 0.2:
            questions.append(rng.choice(UNRELATED))
        else:
            questions.append(f"Do you remember {rng.choice(THINGS)} with {rng.choice(PEOPLE)} at {rng.choice(PLACES)}?")
    return questions


def write_adapter(directory: Path, reflections, embedder) -> int:
    from personalai_contracts import memory
    from personalai_contracts.artifacts import write_manifest

    directory.mkdir(parents=True)
    items = memory.build_items(reflections)
    vectors = embedder.encode([memory.memory_text(item) for item in items], batch_size=64,
                              normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    memory.write_index(directory, items, vectors.tolist())
    write_manifest(directory, adapter_version=VERSION, base_model="tiny", data_version="sha256:bench",
                   config={}, metrics={})
    return len(items)


def stand_in_engine():
    from personalai_server.engines.base import Engine
    from personalai_server.engines.tokenizers import ChatTokenizer
    from personalai_trainer.tiny_model import build_tokenizer

    class TokenizerOnlyEngine(Engine):
        """Counts tokens like the tiny Mistral; a turn is only built here, never generated."""

        kind = "bench"

        def __init__(self):
            super().__init__()
            self.tokenizer = ChatTokenizer(build_tokenizer(), 4096)
            self.active_adapter = VERSION
            self.ready = True

        async def start(self, adapter_version):
            return None

        def stream(self, messages, params, stats):
            raise NotImplementedError

        async def ensure_adapter(self, version):
            return None

        def loaded_adapters(self):
            return [VERSION]

    return TokenizerOnlyEngine()


def build_service(workdir: Path):
    from personalai_server.config import parse_config
    from personalai_server.metrics import ServerMetrics
    from personalai_server.service import ChatService
    from personalai_server.storage import SessionStore

    config = parse_config({"persona": {"displayName": "Bench", "personalAI": "bench"},
                           "engine": {"baseModel": "tiny"},
                           "adapter": {"version": VERSION, "dir": str(workdir / "artifacts")},
                           "storage": {"dataDir": str(workdir / "data")}})
    return ChatService(config, SessionStore(config.storage.data_dir), stand_in_engine(), ServerMetrics())


def sessions(service, owner: str):
    """Two sessions with the same short history, memory on and memory off."""
    made = []
    for memory_on in (True, False):
        session = service.store.create_session(owner, "bench", {"memory": memory_on})
        for question, reply in [("Tell me about your week.", "It was quiet, I read a lot."),
                                ("Did you go out?", "Only to the market on Saturday.")]:
            service.store.append_exchange(owner, session.id, question, reply, {})
        made.append(session)
    return made


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def time_turns(service, principal, with_memory, without_memory, questions):
    """Milliseconds per turn with memory, without, and the query embedding alone."""
    from personalai_contracts import memory

    on, off, embed = [], [], []
    for index, question in enumerate(questions):
        order = [(with_memory, on), (without_memory, off)]
        for session, times in order if index % 2 == 0 else reversed(order):
            started = time.perf_counter()
            await service.build_turn(principal, session, question)
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await service.memories.embedder.encode(memory.retrieval_query(question, []))
        embed.append((time.perf_counter() - started) * 1000)
    return on, off, embed


def report(on: list[float], off: list[float], embed: list[float], goal_ms: float) -> bool:
    added = [a - b for a, b in zip(on, off)]
    for label, values in (("turn with memory", on), ("turn without memory", off),
                          ("added by retrieval", added), ("query embedding alone", embed)):
        print(f"{label:24s} p50 {percentile(values, 0.5):7.2f} ms   p99 {percentile(values, 0.99):7.2f} ms")
    p50_ratio = percentile(on, 0.5) / percentile(off, 0.5)
    p99_ratio = percentile(on, 0.99) / percentile(off, 0.99)
    print(f"ratio with/without memory: p50 {p50_ratio:.1f}x   p99 {p99_ratio:.1f}x")
    met = percentile(added, 0.99) <= goal_ms
    print(f"goal p99 added <= {goal_ms:g} ms: {'met' if met else 'NOT met'}")
    return met


async def main_async(args) -> int:
    from personalai_contracts.memory import load_embedder
    from personalai_server.auth import Principal

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as temporary:
        workdir = Path(temporary)
        started = time.perf_counter()
        indexer = load_embedder()
        count = write_adapter(workdir / "artifacts" / VERSION, synthetic_reflections(args.reflections, rng), indexer)
        print(f"indexed {count} reflections in {time.perf_counter() - started:.1f} s (model load included)")
        del indexer

        service = build_service(workdir)
        index = await service.load_memory(VERSION)  # loads the server's own embedder, as at startup
        print(f"index {index.matrix.shape[0]} x {index.dimensions} float32; cpus {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.2f}")
        principal = Principal("bench-owner")
        with_memory, without_memory = sessions(service, principal.owner)
        questions = turn_questions(args.turns + args.warmup, rng)
        await time_turns(service, principal, with_memory, without_memory, questions[:args.warmup])
        on, off, embed = await time_turns(service, principal, with_memory, without_memory, questions[args.warmup:])
        turn = await service.build_turn(principal, with_memory, questions[-1])
        print(f"{args.turns} turns; memories per turn with memory: {len(turn.memories)} (last turn)")
        met = report(on, off, embed, args.goal_ms)
        service.memories.close()
        service.store.close()
    return 0 if met or not args.strict else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reflections", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--goal-ms", type=float, default=20.0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the goal is not met")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
