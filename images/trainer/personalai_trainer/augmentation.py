"""Varied phrasings of each question, so the model answers in the person's voice to any wording.

Rule-based and deterministic (a seed and the question pick the phrasings): a rewrite of common
openings ("What is your ..." -> "Tell me about your ...") plus conversational frames. Only the
training split is augmented, so no answer leaks into validation under another wording.
"""

from __future__ import annotations

import hashlib
import random
import re

# (pattern on the question, replacement) for openings people use most; \g<rest> keeps the remainder.
_REWRITES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^what (?:is|was|are|were) (?P<rest>.+?)\??$", re.I), "Tell me about {rest}."),
    (re.compile(r"^how do you (?P<rest>.+?)\??$", re.I), "In what way do you {rest}?"),
    (re.compile(r"^how did you (?P<rest>.+?)\??$", re.I), "Can you tell me how you {rest}?"),
    (re.compile(r"^why do you (?P<rest>.+?)\??$", re.I), "What makes you {rest}?"),
    (re.compile(r"^do you (?P<rest>.+?)\??$", re.I), "Would you say you {rest}?"),
    (re.compile(r"^describe (?P<rest>.+?)[.?]?$", re.I), "How would you describe {rest}?"),
    (re.compile(r"^tell me about (?P<rest>.+?)[.?]?$", re.I), "What can you share about {rest}?"),
    (re.compile(r"^what (?P<rest>.+?)\??$", re.I), "I'm curious, what {rest}?"),
]

_FRAMES = [
    "I'd love to hear your thoughts: {question}",
    "{question} Take your time.",
    "Can I ask you something? {question}",
    "Let me ask you this. {question}",
    "{question} Be honest with me.",
    "Here's something I've wondered about you. {question}",
    "Quick question for you: {question}",
    "If you don't mind me asking, {lower}",
]


def rewrite_opening(question: str) -> str | None:
    """The question with its opening reworded, or None when no rule fits."""
    for pattern, template in _REWRITES:
        match = pattern.match(question)
        if match:
            return template.format(rest=match.group("rest"))
    return None


def framed_phrasings(question: str) -> list[str]:
    lower = question[:1].lower() + question[1:] if not question.startswith("I ") else question
    return [frame.format(question=question, lower=lower) for frame in _FRAMES]


def augment_questions(question: str, count: int, seed: int) -> list[str]:
    """The original question followed by `count` other phrasings, the same ones for the same seed."""
    digest = hashlib.sha256(f"{seed}\0{question}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    question = " ".join(question.split())
    rewrite = rewrite_opening(question)
    frames = framed_phrasings(question)
    rng.shuffle(frames)
    # The opening rewrite first: it changes the wording most, frames only wrap it.
    options = [option for option in dict.fromkeys([rewrite, *frames]) if option and option != question]
    return [question, *options[:count]]
