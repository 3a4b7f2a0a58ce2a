"""Quality filter for reflections: drop what would teach the model noise, and count why.

Dropped (in this order): empty answers, garbage (mostly non-letters, or a few words repeated),
too short (under `min_words`), exact duplicates (same answer after normalising case, spacing and
punctuation) and near-duplicates (word 3-gram Jaccard similarity at or over `near_duplicate`
with an answer already kept). Counts only: the report never holds the text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from personalai_contracts import Reflection, count_words

_WORDS = re.compile(r"\w+(?:['’-]\w+)*")


@dataclass
class FilterReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count

    def as_dict(self) -> dict:
        return {"kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


def normalise(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def is_garbage(text: str) -> bool:
    """Mostly not letters (keyboard mash, encoded data), or a handful of words repeated over and over."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return True
    if sum(char.isalpha() for char in visible) / len(visible) < 0.6:
        return True
    words = normalise(text).split()
    return len(words) >= 8 and len(set(words)) / len(words) < 0.3


def shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    if len(words) < size:
        return {tuple(words)}
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


def jaccard(left: set, right: set) -> float:
    return len(left & right) / len(left | right) if left or right else 1.0


def filter_reflections(
    reflections: list[Reflection], *, min_words: int = 5, near_duplicate: float = 0.8,
) -> tuple[list[Reflection], FilterReport]:
    report = FilterReport()
    kept: list[Reflection] = []
    seen_exact: set[str] = set()
    seen_shingles: list[set] = []
    for reflection in reflections:
        answer = reflection.answer
        if count_words(answer) == 0:
            reason = "empty"
        elif is_garbage(answer):
            reason = "garbage"
        elif count_words(answer) < min_words:
            reason = "too_short"
        elif normalise(answer) in seen_exact:
            reason = "duplicate"
        else:
            answer_shingles = shingles(answer)
            reason = "near_duplicate" if any(jaccard(answer_shingles, other) >= near_duplicate
                                             for other in seen_shingles) else ""
            if not reason:
                seen_exact.add(normalise(answer))
                seen_shingles.append(answer_shingles)
                kept.append(reflection)
                continue
        report.dropped[reason] += 1
    report.kept = len(kept)
    return kept, report
