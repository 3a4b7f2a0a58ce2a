"""After training: the fidelity report of the adapter against its baselines, and the promotion gate.

The metrics and how each is computed are defined in fidelity.py. Here they are put together:
`evaluate_candidates` scores every candidate on the same evaluation set and compares the adapter
with each baseline; the gate itself is personalai_contracts.gate. The gate is relative where absolute numbers depend
on the base model (perplexity of a 135M model and of a 7B model differ by an order of magnitude):
the adapter must beat the untouched base model by a margin, and clear floors that a random model
or a degenerate one cannot.
"""

from __future__ import annotations

import math
import re
import time

from personalai_contracts.run_report import MAX_REPORTED_LOSS

_WORDS = re.compile(r"\w+(?:['’-]\w+)*")

# Candidate names, as status.validation.baselines keys. ADAPTER and BASE are scored as they will be
# served (with memory when serving retrieves memories), the *_NO_MEMORY ones without it.
ADAPTER = "adapter"
BASE = "base"
IN_CONTEXT = "inContext"
CURRENT = "current"
ADAPTER_NO_MEMORY = "adapterWithoutMemory"
BASE_NO_MEMORY = "baseWithoutMemory"


def perplexity_from_loss(loss: float) -> float:
    return math.exp(min(loss, MAX_REPORTED_LOSS))  # capped: a diverged loss would overflow the report's bounds


def repetition_ratio(text: str, size: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, near 1 for a loop."""
    words = [word.lower() for word in _WORDS.findall(text)]
    grams = [tuple(words[i:i + size]) for i in range(len(words) - size + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def coherence_score(question_answer_cos: float, question_reference_cos: float, repetition: float,
                    answer_words: int) -> float:
    """relevance x (1 - repetition); relevance = cos(question, answer) / cos(question, person's answer), capped at 1.

    Raw question/answer cosines are low even for good answers, so relevance is judged against the
    person's own answer to the same question. An empty answer scores 0.
    """
    if answer_words == 0:
        return 0.0
    relevance = max(0.0, question_answer_cos) / max(question_reference_cos, 0.05)
    return max(0.0, min(1.0, relevance)) * (1 - repetition)


def score_answers(embedder, questions: list[str], answers: list[str], references: list[str]) -> dict:
    """coherence and personalityConsistency of `answers`, and each answer's similarity to its reference."""
    if not answers:
        return {"coherence": 0.0, "personalityConsistency": 0.0, "similarities": []}
    encode = lambda texts: embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    question_vectors, answer_vectors, reference_vectors = encode(questions), encode(answers), encode(references)
    similarities, coherence = [], []
    for index, answer in enumerate(answers):
        answer_words = len(_WORDS.findall(answer))
        # Cosine can dip below zero for unrelated text; the score is a 0-1 similarity, as the CRD says.
        similarities.append(max(0.0, float(answer_vectors[index] @ reference_vectors[index])) if answer_words else 0.0)
        coherence.append(coherence_score(float(question_vectors[index] @ answer_vectors[index]),
                                         float(question_vectors[index] @ reference_vectors[index]),
                                         repetition_ratio(answer), answer_words))
    return {"coherence": sum(coherence) / len(coherence),
            "personalityConsistency": sum(similarities) / len(similarities), "similarities": similarities}


def closer_fraction(ours: list[float], theirs: list[float]) -> float:
    """Share of questions where our answer is strictly more similar to the person's than theirs."""
    return sum(a > b for a, b in zip(ours, theirs)) / max(1, len(ours))


def compare(adapter: dict, baseline: dict, adapter_similarities: list[float],
            baseline_similarities: list[float]) -> dict:
    gain = None
    if adapter.get("perplexity") and baseline.get("perplexity"):
        gain = 1 - adapter["perplexity"] / baseline["perplexity"]
    return {"perplexityGain": gain, "closer": closer_fraction(adapter_similarities, baseline_similarities)}


def evaluate_candidates(tokenizer, evaluation, candidates: dict, embedder, *, device, max_new_tokens: int,
                        max_answer_tokens: int, known: dict | None = None, on_scored=None,
                        scored: dict | None = None) -> dict:
    """Every metric of fidelity.py for each candidate (keyed ADAPTER, BASE, ...) on the same items.

    `known` holds quick scores already measured for a candidate (the kept epoch's, by the trainer);
    `on_scored(name, seconds)` is told as each candidate is done (the trainer logs the cost);
    `scored` (fidelity.Candidate.key -> fidelity.Scores) lets a caller share passes between reports
    on the same evaluation set while the models do not change; each candidate is scored once either way.
    Returns {"metrics": {name: {...}}, "versus": {baseline name: {"perplexityGain", "closer"}}}.
    """
    from personalai_trainer import fidelity

    scored = {} if scored is None else scored

    def scores_of(name: str, candidate) -> fidelity.Scores:
        if candidate.key not in scored:
            started = time.perf_counter()
            scored[candidate.key] = fidelity.score_candidate(
                tokenizer, evaluation, candidate, device=device, max_new_tokens=max_new_tokens,
                max_answer_tokens=max_answer_tokens, known=(known or {}).get(name))
            if on_scored:
                on_scored(name, time.perf_counter() - started)
        return scored[candidate.key]

    questions = [reflection.question for reflection in evaluation.held_out]
    references = [reflection.answer for reflection in evaluation.held_out]
    base = scores_of(BASE, candidates[BASE])  # every candidate's attribution is measured against the base's
    metrics, similarities = {}, {}
    for name, candidate in candidates.items():
        result = scores_of(name, candidate)
        answers = score_answers(embedder, questions, result.answers, references)
        similarities[name] = answers["similarities"]
        metrics[name] = {"perplexity": result.perplexity, "knowledge": result.knowledge,
                         "attribution": fidelity.attribution_accuracy(result, base),
                         "coherence": answers["coherence"], "personalityConsistency": answers["personalityConsistency"]}
    versus = {name: compare(metrics[ADAPTER], metrics[name], similarities[ADAPTER], similarities[name])
              for name in candidates if name != ADAPTER}  # the adapter as served, against each of the others
    return {"metrics": metrics, "versus": versus}


def gate_inputs(report: dict) -> dict:
    """The flat metrics the gate reads, from an `evaluate_candidates` report."""
    adapter, versus = report["metrics"][ADAPTER], report["versus"]
    return {**adapter, "perplexityGain": versus.get(BASE, {}).get("perplexityGain"),
            "perplexityGainOverInContext": versus.get(IN_CONTEXT, {}).get("perplexityGain"),
            "closerThanBase": versus.get(BASE, {}).get("closer")}


PERPLEXITY_TOLERANCE = 0.1  # an epoch within 10% of the best held-out perplexity still generalises


def choose_epoch(history: list[dict]) -> int:
    """The epoch whose adapter the run keeps: [{"epoch", "perplexity", "knowledge"}, ...] in order.

    Held-out perplexity alone picks early epochs that know few facts; training loss alone picks
    memorisation. So: among the epochs whose held-out perplexity is within PERPLEXITY_TOLERANCE of
    the best, the one that answers the most knowledge probes (the earlier one on a tie).
    """
    eligible = [entry for entry in history if entry["epoch"] in eligible_epochs(history)]
    return max(eligible, key=lambda entry: (entry.get("knowledge") or 0.0, -entry["epoch"]))["epoch"]


def eligible_epochs(history: list[dict]) -> set[int]:
    """Epochs within PERPLEXITY_TOLERANCE of the best held-out perplexity (the best only improves, so an
    epoch that drops out never comes back)."""
    best = min(entry["perplexity"] for entry in history)
    return {entry["epoch"] for entry in history if entry["perplexity"] <= best * (1 + PERPLEXITY_TOLERANCE)}
