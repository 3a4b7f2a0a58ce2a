"""Shared fixtures for the trainer's model tier: a tiny Mistral built once, realistic reflections, configs."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

QUESTIONS = {
    "childhood": ["What is your earliest memory?", "Where did you grow up?", "Who was your best friend as a child?",
                  "What games did you play as a kid?"],
    "values": ["What do you value most in life?", "What does honesty mean to you?", "When did you stand up for something?"],
    "work": ["How did you choose your career?", "What is the best advice you got at work?", "What was your first job?"],
    "family": ["What did your father teach you?", "How do you spend time with your family?", "What do you admire in your mother?"],
    "hopes": ["What do you hope for in the next ten years?", "What would you tell your younger self?"],
}
PHRASES = [
    "I remember the lake behind our house", "my father always said to finish what you start",
    "we never had much money but we had each other", "summer evenings were the best part of the year",
    "I learned to work with my hands early", "being kind costs nothing and it matters a lot",
    "I was stubborn back then and I still am a little", "my mother kept the whole family together",
    "honestly it took me years to understand that", "you have to keep going when things get hard",
    "we laughed a lot around the kitchen table", "I still think about it when I drive past the old school",
]


def make_reflections(count: int = 32, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    pairs = [(category, question) for category, questions in QUESTIONS.items() for question in questions]
    items = []
    for index in range(count):
        category, question = pairs[index % len(pairs)]
        sentences = rng.sample(PHRASES, rng.randint(3, 5))
        answer = ". ".join(sentence[0].upper() + sentence[1:] for sentence in sentences) + "."
        items.append({"question": question, "category": category, "answer": answer,
                      "date": f"2024-0{1 + index % 9}-1{index % 10}"})
    return items


@pytest.fixture(scope="session")
def reflections() -> list[dict]:
    return make_reflections()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, reflections) -> Path:
    import torch

    from personalai_trainer.tiny_model import build_tiny_model

    torch.set_num_threads(1)  # other tiers run beside this one on 2 cores
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model",
                            extra_texts=[r["answer"] for r in reflections] + [q for qs in QUESTIONS.values() for q in qs])


@pytest.fixture
def write_config(tmp_path, tiny_model_dir, reflections):
    """Write reflections and a trainer config into tmp_path; returns the config path."""

    def write(training: dict | None = None, reflections_text: str | None = None, name: str = "r.jsonl",
              **sections) -> Path:
        data_path = tmp_path / name
        data_path.write_text(reflections_text if reflections_text is not None
                             else "\n".join(json.dumps(r) for r in reflections))
        config = {
            "run": {"name": "luke-test", "namespace": "default", "personalAI": "luke", "adapterVersion": "v1-test",
                    "dataVersion": "sha256:test"},
            "persona": {"displayName": "Luke"},
            "baseModel": str(tiny_model_dir),
            "paths": {"reflections": str(data_path), "modelCache": str(tmp_path / "cache"),
                      "output": str(tmp_path / "out"), "checkpoints": str(tmp_path / "checkpoints")},
            "training": {"epochs": 1, "batchSize": 2, "maxSeqLength": 512, "quantization": "nf4",
                         "learningRate": 5e-3, "warmupSteps": 2, "checkpointEverySteps": 50,
                         "augmentPhrasings": 1, **(training or {})},
            "validation": {"maxSamples": 3, "maxNewTokens": 16},
            "reporting": {"kubernetes": False, "metricsPort": 0, "minIntervalSeconds": 0},
        }
        config.update(sections)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return path

    return write


@pytest.fixture(scope="session")
def trainer_command() -> list[str]:
    return [sys.executable, "-m", "personalai_trainer", "--config"]


@pytest.fixture(scope="session")
def read_events():
    """The JSON log events in a trainer's stdout (other lines skipped)."""

    def read(text: str) -> list[dict]:
        events = []
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    return read
