"""Score a set of reflections against the readiness levels: minimum and optimal (the product brief's levels).

minimum: 20 responses, 30+ average words, 3+ categories, 1,000+ words;
optimal: 100 responses, 100+ average words, 8+ categories, 5,000+ words.
The result dumps (by alias) into PersonalAI `status.dataAssessment`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from personalai_contracts.models import Reflection

_WORD = re.compile(r"\w+(?:['’-]\w+)*")


class ReadinessThresholds(BaseModel):
    """One level's bar; a set of reflections reaches the level when it meets all four."""

    responses: int
    average_words: float
    categories: int
    total_words: int


MINIMUM = ReadinessThresholds(responses=20, average_words=30, categories=3, total_words=1000)
OPTIMAL = ReadinessThresholds(responses=100, average_words=100, categories=8, total_words=5000)


class DataAssessment(BaseModel):
    """How much the person has written, the level it reaches and what is missing for the next one."""

    model_config = ConfigDict(populate_by_name=True)

    responses: int
    average_words: float = Field(alias="averageWords")
    categories: int
    total_words: int = Field(alias="totalWords")
    level: Literal["insufficient", "minimum", "optimal"]
    missing: list[str] = Field(default_factory=list)
    message: str


def count_words(text: str) -> int:
    """Words as a reader counts them: runs of letters or digits, contractions and hyphenations as one."""
    return len(_WORD.findall(text))


def assess_readiness(reflections: Iterable[Reflection]) -> DataAssessment:
    """Count responses, words and categories (answered reflections only) and score them."""
    word_counts: list[int] = []
    categories: set[str] = set()
    for reflection in reflections:
        words = count_words(reflection.answer)
        if words == 0:
            continue  # an empty answer is not a response
        word_counts.append(words)
        categories.add(" ".join(reflection.category.lower().split()))
    responses = len(word_counts)
    total_words = sum(word_counts)
    average_words = round(total_words / responses, 1) if responses else 0.0
    counts = {"responses": responses, "average_words": average_words, "categories": len(categories),
              "total_words": total_words}

    if not _shortfalls(counts, OPTIMAL):
        level, missing = "optimal", []
        message = f"Ready to train at the optimal level: {_summary(counts)}."
    elif not _shortfalls(counts, MINIMUM):
        level, missing = "minimum", _shortfalls(counts, OPTIMAL)
        message = f"Ready to train at the minimum level; for the optimal level: {', '.join(missing)}."
    else:
        level, missing = "insufficient", _shortfalls(counts, MINIMUM)
        message = f"Not enough reflections to train yet: {', '.join(missing)}."
    return DataAssessment(
        responses=responses, average_words=average_words, categories=len(categories),
        total_words=total_words, level=level, missing=missing, message=message,
    )


def _shortfalls(counts: dict, bar: ReadinessThresholds) -> list[str]:
    """What falls short of `bar`, each as "have of need unit" (e.g. "14 of 20 responses")."""
    missing = []
    if counts["responses"] < bar.responses:
        missing.append(f"{counts['responses']:,} of {bar.responses:,} responses")
    if counts["average_words"] < bar.average_words:
        missing.append(f"{_number(counts['average_words'])} of {_number(bar.average_words)} average words")
    if counts["categories"] < bar.categories:
        missing.append(f"{counts['categories']} of {bar.categories} categories")
    if counts["total_words"] < bar.total_words:
        missing.append(f"{counts['total_words']:,} of {bar.total_words:,} words")
    return missing


def _summary(counts: dict) -> str:
    return (f"{counts['responses']:,} responses, {_number(counts['average_words'])} average words, "
            f"{counts['categories']} categories, {counts['total_words']:,} words")


def _number(value: float) -> str:
    """1 decimal when it has one, none when it is whole (30, 25.5)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
