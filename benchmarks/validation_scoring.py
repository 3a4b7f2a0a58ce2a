"""Validation's cost: our scoring (one pass per candidate) against one pass per metric, same run.

    python benchmarks/validation_scoring.py                    # SmolLM2-135M-Instruct, the demo's budget
    python benchmarks/validation_scoring.py --questions 4 --probes 8 --no-memory

Both sides score the same candidates (a LoRA adapter with random weights on SmolLM2-135M-Instruct, the
base model, the base model prompted in context; with memory, as served, and the two without) on the
same held-out reflections of examples/reflections/luke.jsonl, the same knowledge probes and the same
generic answers:
- per metric (how validation scored before): each candidate's greedy answers, its held-out
  perplexity and its attribution continuations in three passes over the held-out prompts, and the
  base model's attribution pass again for every candidate;
- ours (validation.evaluate_candidates): one pass per candidate over the held-out prompts, whose KV
  cache generation builds and the perplexity and attribution continuations reuse
  (fidelity.answer_and_score), the base model's scores shared.
Knowledge probes cost the same on both sides. It checks that both give the same metrics and prints
seconds and the ratio. Prompts with memories are long, so that is where one prefill instead of three
counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from personalai_contracts import memory, parse_reflections
from personalai_trainer import fidelity, validation
from personalai_trainer.examples import build_system_prompt, split_train_validation
from personalai_trainer.filtering import filter_reflections

REPO = Path(__file__).resolve().parents[1]


def per_metric(tokenizer, evaluation, candidates: dict, embedder, *, max_new_tokens: int, max_answer_tokens: int) -> dict:
    """The same metrics, each from its own pass: answers, perplexity, attribution (base re-scored each time)."""
    contrast = fidelity.contrast_answers(tokenizer, evaluation)
    questions = [reflection.question for reflection in evaluation.held_out]
    references = [reflection.answer for reflection in evaluation.held_out]

    def contrast_scores(candidate) -> list:
        groups = [(fidelity.prompt_ids(tokenizer, candidate.messages(evaluation.system_prompt, reflection.question)),
                   continuations) for reflection, continuations in zip(evaluation.held_out, contrast) if continuations]
        with candidate.activate(), fidelity.evaluating(candidate.model):
            return fidelity.continuation_nll(candidate.model, groups, device="cpu")

    metrics = {}
    for name, candidate in candidates.items():
        prompts = [fidelity.prompt_ids(tokenizer, candidate.messages(evaluation.system_prompt, question))
                   for question in questions]
        with candidate.activate(), fidelity.evaluating(candidate.model):
            answers = fidelity.generate_batch(candidate.model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                              device="cpu")
        ours = fidelity.Scores(answers, 0.0, None, contrast_scores(candidate))
        base = fidelity.Scores([], 0.0, None, contrast_scores(candidates[validation.BASE]))
        scored = validation.score_answers(embedder, questions, answers, references)
        metrics[name] = {
            **fidelity.quick_scores(tokenizer, evaluation, candidate, device="cpu", max_answer_tokens=max_answer_tokens),
            "attribution": fidelity.attribution_accuracy(ours, base),
            "coherence": scored["coherence"], "personalityConsistency": scored["personalityConsistency"]}
    return metrics


def differences(first: dict, second: dict) -> list[str]:
    found = []
    for name, values in first.items():
        for key, value in values.items():
            other = second[name][key]
            if value != other and not (isinstance(value, float) and abs(value - other) <= 1e-4 * max(1.0, abs(value))):
                found.append(f"{name}.{key}: {value} vs {other}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=8, help="held-out questions (the demo's 8)")
    parser.add_argument("--probes", type=int, default=16, help="knowledge probes (the demo's 16)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (the demo's 48)")
    parser.add_argument("--no-memory", action="store_true", help="three candidates, no memories in the prompts")
    args = parser.parse_args()

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from devcluster.small_model import ensure_small_model  # the converted model, cached

    torch.manual_seed(0)
    model_dir = ensure_small_model()
    raw = (REPO / "examples" / "reflections" / "luke.jsonl").read_bytes()
    kept, _ = filter_reflections(parse_reflections(raw, "luke.jsonl"))
    train, held_out = split_train_validation(kept, 0.1, 42)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=16, target_modules="all-linear", init_lora_weights=False))
    embedder = memory.load_embedder()
    evaluation = fidelity.build_evaluation_set(build_system_prompt("Luke"), train, held_out,
                                               max_samples=args.questions, probes=args.probes, seed=42)
    candidates = fidelity.standard_candidates(model, train, 42)
    if not args.no_memory:
        recaller = fidelity.Recaller(train, embedder, tokenizer, memory.MemorySettings())
        candidates = fidelity.with_memory(candidates, recaller)
    fidelity.make_distractors(tokenizer, evaluation, candidates[validation.BASE], device="cpu", seed=42)
    budget = {"max_new_tokens": args.max_new_tokens, "max_answer_tokens": 512}
    print(f"{len(candidates)} candidates, {len(evaluation.held_out)} held-out questions, "
          f"{len(evaluation.probes)} probes, {args.max_new_tokens}-token answers, {torch.get_num_threads()} threads",
          flush=True)

    started = time.perf_counter()
    baseline = per_metric(tokenizer, evaluation, candidates, embedder, **budget)
    baseline_seconds = time.perf_counter() - started
    print(f"per metric: {baseline_seconds:.1f} s", flush=True)
    started = time.perf_counter()
    ours = validation.evaluate_candidates(tokenizer, evaluation, candidates, embedder, device="cpu", **budget)["metrics"]
    ours_seconds = time.perf_counter() - started
    print(f"ours:       {ours_seconds:.1f} s", flush=True)
    mismatched = differences(baseline, ours)
    for line in mismatched:
        print(f"  differs: {line}")
    print(f"ratio {baseline_seconds / ours_seconds:.2f}x; metrics {'differ' if mismatched else 'identical'}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
