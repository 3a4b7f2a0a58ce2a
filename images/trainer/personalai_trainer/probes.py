"""Knowledge probes: what the model knows of what the person told it, built from their own answers.

Held-out questions say how the model answers what it never saw; they cannot say whether it learned
the facts in the answers it trained on (his wife's name, the town, the year he married). A probe is
a multiple-choice cloze over one such fact: the question, the person's answer up to the fact, and
four continuations, the real one and three facts of the same kind (person, place, year, number)
taken from the person's *other* answers, so every choice is a name, place or number from the same life and only knowing which one
belongs here can pick it. A model that knows nothing of the person scores about 1 in 4.

    probes = build_probes(training_reflections, limit=32, seed=42)

Pure: no model here; fidelity.py scores the choices.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from personalai_contracts import Reflection

CHOICES = 4  # one real fact and three distractors: chance is 25%
MIN_PREFIX_WORDS = 6  # a fact in the first few words has too little context to be recalled

# A run of capitalised words that does not start a sentence ("Sweet Home", "Maggie", "Oregon State"),
# or a number with an optional suffix ("1987", "12th", "38"). Capitalised words at the start of a
# sentence are mostly ordinary words ("The", "But"), so they never start a fact.
_NAME = re.compile(r"\b([A-Z][a-z]+(?:[ -][A-Z][a-z]+)*)\b")
_NUMBER = re.compile(r"\b(\d{1,4}(?:st|nd|rd|th|s)?)\b")
_YEAR = re.compile(r"(19|20)\d\ds?")
_PLACE_WORDS = {"in", "at", "from", "to", "near", "into", "outside", "toward", "towards", "across", "through"}
# Capitalised words that are not facts about the person.
_COMMON = {"I", "I'm", "I've", "I'd", "Mom", "Dad", "God", "Christmas", "Sunday", "Monday", "Tuesday", "Wednesday",
           "Thursday", "Friday", "Saturday", "January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December", "English", "American", "Lord", "Bible",
           "Thanksgiving", "Easter", "TV", "OK", "Mr", "Mrs", "Ms", "Dr"}


@dataclass(frozen=True)
class Probe:
    question: str
    prefix: str  # the person's answer up to the fact
    choices: tuple[str, ...]
    answer: int  # index of the real fact in choices
    kind: str  # "person", "place", "year" or "number"


_LOWER_WORD = re.compile(r"\b[a-z]+\b")


def find_facts(text: str, ordinary_words: frozenset[str] = frozenset()) -> list[tuple[str, str, int]]:
    """(kind, fact, start offset) for each name or number in `text`, in order.

    A capitalised word that the person also writes in lower case ("Never", "River") is an ordinary
    word opening a quote or a title, not a name: `ordinary_words` holds those lower-case words.
    """
    facts = []
    for match in _NAME.finditer(text):
        fact = match.group(1)
        if fact.split()[0].split("-")[0].lower() in ordinary_words:
            continue
        if fact not in _COMMON and not _sentence_start(text, match.start(1)):
            # After "in", "from", ... a name is a place; choices of the same kind keep each one plausible.
            kind = "place" if _previous_word(text, match.start(1)) in _PLACE_WORDS else "person"
            facts.append((kind, fact, match.start(1)))
    for match in _NUMBER.finditer(text):
        facts.append(("year" if _YEAR.fullmatch(match.group(1)) else "number", match.group(1), match.start(1)))
    return sorted(facts, key=lambda fact: fact[2])


def _previous_word(text: str, offset: int) -> str:
    words = text[:offset].split()
    return words[-1].lower() if words else ""


def _sentence_start(text: str, offset: int) -> bool:
    before = text[:offset].rstrip(" \"'(“‘")
    return not before or before[-1] in ".!?:;\n"


def ordinary_words(reflections: list[Reflection]) -> frozenset[str]:
    """The lower-case words the person writes: capitalised, they are not names (see find_facts)."""
    return frozenset(word for reflection in reflections for word in _LOWER_WORD.findall(reflection.answer))


def proper_names(reflections: list[Reflection]) -> set[str]:
    """The people and places the person names in their answers."""
    ordinary = ordinary_words(reflections)
    return {fact for reflection in reflections for kind, fact, _ in find_facts(reflection.answer, ordinary)
            if kind in ("person", "place")}


def build_probes(reflections: list[Reflection], *, limit: int, seed: int) -> list[Probe]:
    """Up to `limit` probes, at most one per reflection, each with distractors from other answers."""
    ordinary = ordinary_words(reflections)
    per_reflection = [(reflection, find_facts(reflection.answer, ordinary)) for reflection in reflections]
    pool: dict[str, set[str]] = {"person": set(), "place": set(), "year": set(), "number": set()}
    for _, facts in per_reflection:
        for kind, fact, _ in facts:
            pool[kind].add(fact)
    rng = random.Random(seed)
    probes = []
    for reflection, facts in per_reflection:
        own = {fact for _, fact, _ in facts}
        # A fact already written earlier in the answer, or in the question, can be copied from the
        # context by any model: only a fact's first mention tests what the model knows.
        usable = [(kind, fact, start) for kind, fact, start in facts
                  if len(reflection.answer[:start].split()) >= MIN_PREFIX_WORDS
                  and fact not in reflection.answer[:start] and fact not in reflection.question
                  and len(pool[kind] - own) >= CHOICES - 1]
        if not usable:
            continue
        kind, fact, start = rng.choice(usable)
        distractors = rng.sample(sorted(pool[kind] - own), CHOICES - 1)
        choices = [fact, *distractors]
        rng.shuffle(choices)
        probes.append(Probe(question=reflection.question, prefix=reflection.answer[:start].rstrip(),
                            choices=tuple(choices), answer=choices.index(fact), kind=kind))
    rng.shuffle(probes)
    return probes[:limit]
