"""How long a training run will take, estimated before it starts: tokens trained / throughput.

    tokens per epoch = data tokens x (1 - validationSplit) x (1 + augmentPhrasings)
    seconds          = tokens per epoch x epochs / throughput of the GPU class (tokens/s)

Data tokens are the assessment's token count when the status has one, else its word count x
WORDS_TO_TOKENS. The trainer keeps the best epoch but plans all of them, and validation, model
loading and checkpoints come on top: the answer says it is an estimate and what it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Tokens per word of English prose for Mistral's (and SmolLM2's) tokenizer: about 0.75 words per token.
WORDS_TO_TOKENS = 1.3


@dataclass(frozen=True)
class Estimate:
    tokens: int  # tokens trained over all epochs
    seconds: int
    completion: datetime
    basis: str


def data_tokens(assessment: dict) -> tuple[int, str]:
    """The data's tokens, and how they were counted."""
    if isinstance(assessment.get("totalTokens"), int):
        return assessment["totalTokens"], "the assessment's token count"
    words = int(assessment.get("totalWords") or 0)
    return round(words * WORDS_TO_TOKENS), f"{words:,} words x {WORDS_TO_TOKENS} tokens per word"


def estimate(assessment: dict, training: dict, throughput: float, gpu_class: str, now: datetime) -> Estimate:
    """`training` is the PersonalAI's spec.training as stored (camelCase, the API server's defaults applied)."""
    tokens, counted = data_tokens(assessment)
    epochs = int(training.get("epochs", 4))
    held_out = float(training.get("validationSplit", 0.1))
    phrasings = 1 + int(training.get("augmentPhrasings", 2))
    trained = round(tokens * (1 - held_out) * phrasings * epochs)
    seconds = max(1, round(trained / throughput))
    basis = (f"estimate: {counted} = {tokens:,} tokens, x {1 - held_out:g} in the training split x {phrasings} "
             f"phrasings x {epochs} epochs = {trained:,} tokens at {throughput:,g} tokens/s ({gpu_class}); "
             "validation and model loading come on top")
    return Estimate(trained, seconds, now + timedelta(seconds=seconds), basis)


def duration_words(seconds: int) -> str:
    """ "about 3 minutes", "about 2 hours 10 minutes": the brief's estimatedTrainingTime is for people."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' * (hours != 1)}"] if hours else []
    parts += [f"{minutes} minute{'s' * (minutes != 1)}"] if minutes else []
    return "about " + " ".join(parts)
