"""Does the adapter sound like the person and know what they told it? Measured against baselines.

Everything here is scored on reflections the adapter never trained on (the held-out split), except
the knowledge probes, which ask about facts in the training answers (probes.py). Each candidate
(the tuned adapter, the untouched base model, the base model prompted in context with a few of the
person's own answers, the adapter being served now) is scored on the same items:

- perplexity: exp of the mean negative log-likelihood per token of the person's held-out answers,
  given the persona's system prompt and the question. Lower: the model expects what the person says.
- personalityConsistency: mean cosine similarity (all-MiniLM-L6-v2) between the model's greedy
  answer to a held-out question and the person's real answer, 0-1.
- coherence: per answer, relevance x (1 - repetition) (validation.coherence_score), 0-1.
- attribution: the fraction of held-out questions on which the model raised the likelihood of the
  person's real answer (over its first ATTRIBUTION_TOKENS tokens, per token, against the base
  model) more than that of every one of DISTRACTORS generic answers to the same question sampled
  from the base model (attribution_accuracy says why it is contrastive). Chance is 1 in
  DISTRACTORS + 1; the base model itself scores 0.
- knowledge: the fraction of knowledge probes where the real fact is the most likely choice
  (chance 25%).
And for the adapter against each baseline: perplexityGain (1 - its perplexity / the baseline's)
and closerThan<Baseline> (the fraction of held-out questions where its answer is more similar to the
person's real answer than the baseline's answer is).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

from personalai_contracts import Reflection, memory
from personalai_trainer.probes import Probe, build_probes
from personalai_trainer.validation import ADAPTER, ADAPTER_NO_MEMORY, BASE, BASE_NO_MEMORY, CURRENT, IN_CONTEXT

DISTRACTORS = 3  # generic answers per held-out question: chance attribution is 1 in 4
ATTRIBUTION_TOKENS = 48  # compare answers over the same number of tokens: length must not decide
IN_CONTEXT_SHOTS = 3  # the person's own answers shown to the in-context baseline
SCORE_BATCH = 8  # sequences per forward pass when scoring (CPU-sized; cheap on a GPU)
PROBE_CONTEXT_TOKENS = 64  # the answer's last words before the fact: enough to cue it, and a bounded cost


@dataclass(frozen=True)
class Candidate:
    """One model to score: the model, how to switch it to this candidate, how it is prompted.

    The adapter and the base model are one PeftModel (`activate` = `model.disable_adapter` for the
    base), so a baseline costs no second copy of the weights.
    """

    name: str
    model: object
    activate: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    shots: tuple[Reflection, ...] = ()  # the person's answers shown in the prompt before the question
    memory: Recaller | None = None  # the person's reflections retrieved into the system prompt, as served

    def messages(self, system_prompt: str, question: str, source: Reflection | None = None) -> list[dict]:
        """The chat prompt this candidate answers `question` under (`source`: the reflection a probe
        comes from, which its memory must not simply hand back)."""
        if self.memory is not None:
            system_prompt = self.memory.system_prompt(system_prompt, question, exclude=source)
        return prompt_messages(system_prompt, self.shots, question)

    @property
    def key(self) -> tuple:
        """What decides this candidate's scores: the same model, switch, examples and memory score the same
        (under another name too), so a report scores each once."""
        return (id(self.model), self.activate, tuple((shot.question, shot.answer) for shot in self.shots),
                id(self.memory))


class Recaller:
    """Memory as the chat server does it (personalai_contracts.memory), over the training reflections:
    a held-out answer is never in the index, so memory cannot leak the answer it is scored on."""

    def __init__(self, train: list[Reflection], embedder, tokenizer, settings: memory.MemorySettings):
        self.items = memory.build_items(train)
        self.embedder, self.settings = embedder, settings
        self.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        self.vectors = self._encode([memory.memory_text(item) for item in self.items])
        self._queries: dict[str, object] = {}

    def _encode(self, texts: list[str]):
        return self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def recall(self, question: str, exclude: Reflection | None = None) -> memory.Recall:
        query = memory.retrieval_query(question, [])
        if query not in self._queries:
            self._queries[query] = self._encode([query])[0]
        similarities = (self.vectors @ self._queries[query]).tolist()
        if exclude is not None:
            excluded = memory.memory_id(exclude)
            similarities = [-1.0 if item.id == excluded else score for item, score in zip(self.items, similarities)]
        return memory.choose(self.items, similarities, self.settings, self.count_tokens)

    def system_prompt(self, system_prompt: str, question: str, exclude: Reflection | None = None) -> str:
        return memory.system_prompt_with_memories(system_prompt, self.recall(question, exclude), self.settings)


@dataclass
class EvaluationSet:
    """What every candidate is scored on: built once per run, so the comparison is like for like."""

    system_prompt: str
    held_out: list[Reflection]
    probes: list[Probe]
    distractors: list[list[str]] = field(default_factory=list)  # per held-out question
    probe_sources: list[Reflection] = field(default_factory=list)  # the reflection each probe was made from


def build_evaluation_set(system_prompt: str, train: list[Reflection], held_out: list[Reflection], *,
                         max_samples: int, probes: int, seed: int) -> EvaluationSet:
    """The held-out questions and the knowledge probes (from the training answers) of one run."""
    chosen = build_probes(train, limit=probes, seed=seed)
    by_question = {reflection.question: reflection for reflection in train}
    return EvaluationSet(system_prompt, held_out[:max_samples], chosen,
                         probe_sources=[by_question[probe.question] for probe in chosen])


def prompt_messages(system_prompt: str, shots: tuple[Reflection, ...], question: str,
                    answer: str | None = None) -> list[dict]:
    """The chat prompt for a question, with the person's answers to earlier questions as prior turns."""
    messages = [{"role": "system", "content": system_prompt}]
    for shot in shots:
        messages += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as a continuation (no special tokens added)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def continuation_nll(model, groups: list[tuple[list[int], list[list[int]]]], *, device) -> list[list[tuple[float, int]]]:
    """(summed negative log-likelihood, token count) of each continuation of each prompt.

    `groups` pairs a prompt with the continuations scored after it (a probe's four choices, a
    question's real and generic answers). Each prompt runs once; its KV cache is then reused for
    every continuation (cropped back after each), so a shared prompt is not paid for four times.
    """
    results: list[list[tuple[float, int]]] = []
    for start in range(0, len(groups), SCORE_BATCH):
        chunk = groups[start:start + SCORE_BATCH]
        input_ids, attention = left_padded([prompt for prompt, _ in chunk], pad=0)
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        out = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                    position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        results += score_after_prompts(model, chunk, out.past_key_values, first, attention, device=device)
    return results


@torch.no_grad()
def answer_and_score(model, tokenizer, groups: list[tuple[list[int], list[list[int]]]], *, max_new_tokens: int,
                     device) -> tuple[list[str], list[list[tuple[float, int]]]]:
    """Greedy answers to each prompt and continuation_nll's scores of its continuations, from one prefill.

    A long prompt (memories, examples) costs more than the answer decoded after it, so the KV cache
    that generation builds for the prompts is cropped back to them and scores the continuations too.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    results: list[list[tuple[float, int]]] = []
    for start in range(0, len(groups), SCORE_BATCH):
        chunk = groups[start:start + SCORE_BATCH]
        input_ids, attention = left_padded([prompt for prompt, _ in chunk], pad=pad)
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, use_cache=True,
                             repetition_penalty=1.0, return_dict_in_generate=True, output_logits=True)
        length = input_ids.shape[1]
        answers += [tokenizer.decode(row[length:], skip_special_tokens=True).strip() for row in out.sequences]
        cache = out.past_key_values
        cache.crop(length)  # the prompts only: what generation added after them is not what is scored
        first = torch.log_softmax(out.logits[0].float(), dim=-1)  # the first step's logits: at the prompts' end
        results += score_after_prompts(model, chunk, cache, first, attention, device=device)
    return answers, results


def left_padded(prompts: list[list[int]], *, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask with left padding: every prompt ends at the last position."""
    length = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), length), pad, dtype=torch.long)
    attention = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt):] = torch.tensor(prompt)
        attention[row, length - len(prompt):] = 1
    return input_ids, attention


def score_after_prompts(model, chunk: list[tuple[list[int], list[list[int]]]], cache, first: torch.Tensor,
                        attention: torch.Tensor, *, device) -> list[list[tuple[float, int]]]:
    """Each continuation of each prompt scored on the prompts' KV cache (cropped back after each);
    `first`: log-probabilities at the prompts' last position, which score a continuation's first token."""
    prompts = [prompt for prompt, _ in chunk]
    length = attention.shape[1]
    scores: list[list[tuple[float, int]]] = [[] for _ in chunk]
    for index in range(max((len(continuations) for _, continuations in chunk), default=0)):
        tokens = [continuations[index] if index < len(continuations) else [] for _, continuations in chunk]
        width = max(1, max(len(ids) for ids in tokens))
        step_ids = torch.zeros((len(chunk), width), dtype=torch.long)
        step_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(tokens):  # right padding: pads come after, so they change nothing
            if ids:
                step_ids[row, :len(ids)] = torch.tensor(ids)
                step_mask[row, :len(ids)] = 1
        step_positions = torch.tensor([len(prompt) for prompt in prompts])[:, None] + torch.arange(width)[None, :]
        logits = model(input_ids=step_ids.to(device), attention_mask=torch.cat([attention, step_mask], 1).to(device),
                       position_ids=step_positions.to(device), past_key_values=cache, use_cache=True).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        cache.crop(length)
        for row, ids in enumerate(tokens):
            if index >= len(chunk[row][1]):
                continue
            if not ids:
                scores[row].append((0.0, 0))
                continue
            nll = -first[row, ids[0]].item()
            if len(ids) > 1:
                following = torch.tensor(ids[1:], device=log_probs.device)
                nll -= log_probs[row, :len(ids) - 1].gather(1, following[:, None]).sum().item()
            scores[row].append((nll, len(ids)))
    return scores


@torch.no_grad()
def generate_batch(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, device,
                   sample_seed: int | None = None) -> list[str]:
    """Answers to each prompt, decoded together (left padding): greedy, or sampled when a seed is given."""
    if not prompts:
        return []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids, attention = left_padded(prompts, pad=pad)
    length = input_ids.shape[1]
    sampling: dict = {"do_sample": False}
    if sample_seed is not None:
        torch.manual_seed(sample_seed)
        sampling = {"do_sample": True, "temperature": 1.0, "top_p": 0.95}
    output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                            max_new_tokens=max_new_tokens, pad_token_id=pad, use_cache=True,
                            repetition_penalty=1.0, **sampling)
    return [tokenizer.decode(row[length:], skip_special_tokens=True).strip() for row in output]


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def pick_shots(train: list[Reflection], seed: int, count: int = IN_CONTEXT_SHOTS) -> tuple[Reflection, ...]:
    """A few of the person's training answers, the same for every evaluation of this data and seed."""
    ordered = sorted(train, key=lambda reflection: (len(reflection.answer), reflection.question))
    shortest = ordered[: max(count * 4, count)]  # short ones: the in-context prompt stays affordable
    return tuple(random.Random(seed).sample(shortest, min(count, len(shortest))))


def standard_candidates(model, train: list[Reflection], seed: int) -> dict[str, Candidate]:
    """The tuned adapter and its two baselines, all from one PeftModel."""
    return {ADAPTER: Candidate(ADAPTER, model),
            BASE: Candidate(BASE, model, model.disable_adapter),
            IN_CONTEXT: Candidate(IN_CONTEXT, model, model.disable_adapter, pick_shots(train, seed))}


def with_memory(candidates: dict[str, Candidate], recaller: Recaller) -> dict[str, Candidate]:
    """The adapter, base and current adapter as served with memory; the adapter and base also without."""
    served = {name: replace(candidate, memory=recaller) if name in (ADAPTER, BASE, CURRENT) else candidate
              for name, candidate in candidates.items()}
    return {**served, ADAPTER_NO_MEMORY: replace(candidates[ADAPTER], name=ADAPTER_NO_MEMORY),
            BASE_NO_MEMORY: replace(candidates[BASE], name=BASE_NO_MEMORY)}


def make_distractors(tokenizer, evaluation: EvaluationSet, base: Candidate, *, device, seed: int) -> None:
    """Generic answers to each held-out question, sampled from the base model without memory or examples:
    it does not know the person (and the short prompt keeps sampling cheap)."""
    base = replace(base, memory=None, shots=())
    prompts = [prompt_ids(tokenizer, base.messages(evaluation.system_prompt, reflection.question))
               for reflection in evaluation.held_out for _ in range(DISTRACTORS)]
    with base.activate(), evaluating(base.model):
        answers = generate_batch(base.model, tokenizer, prompts, max_new_tokens=ATTRIBUTION_TOKENS, device=device,
                                 sample_seed=seed)  # only the first ATTRIBUTION_TOKENS are compared
    evaluation.distractors = [answers[index:index + DISTRACTORS] for index in range(0, len(answers), DISTRACTORS)]


def held_out_perplexity(tokenizer, evaluation: EvaluationSet, candidate: Candidate, *, device,
                        max_answer_tokens: int) -> float:
    groups = [(prompt_ids(tokenizer, candidate.messages(evaluation.system_prompt, reflection.question)),
               [text_ids(tokenizer, reflection.answer)[:max_answer_tokens]]) for reflection in evaluation.held_out]
    with candidate.activate(), evaluating(candidate.model):
        return perplexity_of([group[0] for group in continuation_nll(candidate.model, groups, device=device)])


def perplexity_of(scores: list[tuple[float, int]]) -> float:
    """exp of the mean negative log-likelihood per token over (summed nll, token count) pairs."""
    total, count = sum(nll for nll, _ in scores), sum(count for _, count in scores)
    return math.exp(min(total / max(count, 1), 50.0))  # capped: a diverged model must not overflow JSON


def knowledge_accuracy(tokenizer, evaluation: EvaluationSet, candidate: Candidate, *, device) -> float | None:
    """Fraction of probes whose real fact is the likeliest choice (summed log-likelihood of the choice).

    Not measured for a candidate shown fixed example answers: they say nothing of the probed facts,
    and would multiply the cost of every probe by the length of the examples.
    """
    if not evaluation.probes or candidate.shots:
        return None
    groups = []
    for probe, source in zip(evaluation.probes, evaluation.probe_sources):
        prompt = prompt_ids(tokenizer, candidate.messages(evaluation.system_prompt, probe.question, source))
        context = prompt + text_ids(tokenizer, probe.prefix)[-PROBE_CONTEXT_TOKENS:]
        groups.append((context, [text_ids(tokenizer, " " + choice) for choice in probe.choices]))
    with candidate.activate(), evaluating(candidate.model):
        scores = continuation_nll(candidate.model, groups, device=device)
    correct = 0
    for probe, choice_scores in zip(evaluation.probes, scores):
        nlls = [nll for nll, _ in choice_scores]
        correct += int(min(range(len(nlls)), key=nlls.__getitem__) == probe.answer)
    return correct / len(evaluation.probes)


def contrast_answers(tokenizer, evaluation: EvaluationSet) -> list[list[list[int]] | None]:
    """Per held-out question, the token ids attribution compares: the person's real answer first, then the
    generic ones, all cut to the shortest (and at most ATTRIBUTION_TOKENS); None where one is empty."""
    if not evaluation.distractors:
        return [None] * len(evaluation.held_out)
    rows: list[list[list[int]] | None] = []
    for reflection, distractors in zip(evaluation.held_out, evaluation.distractors):
        answers = [text_ids(tokenizer, text)[:ATTRIBUTION_TOKENS] for text in [reflection.answer, *distractors]]
        shortest = min(len(answer) for answer in answers)
        rows.append([answer[:shortest] for answer in answers] if shortest else None)
    return rows


def attribution_accuracy(candidate: Scores, base: Scores) -> float | None:
    """Fraction of held-out questions where tuning raised the real answer's likelihood more than every
    generic answer's: per token, log p_candidate - log p_base, over the same number of tokens.

    Contrastive on purpose: generic text sampled from a model is likelier than anything a person
    writes under every model, so raw likelihood ranks it first for all of them. What tuning on the
    person should change is how much likelier their words become. The base model scores 0 (no
    change, no win); only a candidate derived from the base model is meaningfully scored.
    """
    if not base.contrast:
        return None
    wins = 0
    for candidate_scores, base_scores in zip(candidate.contrast, base.contrast):
        # Higher is better: how much less surprising the candidate finds each answer than the base did.
        lift = [(base_nll - nll) / max(count, 1) for (nll, count), (base_nll, _) in zip(candidate_scores, base_scores)]
        wins += int(all(lift[0] > other for other in lift[1:]))
    return wins / len(base.contrast)


@dataclass(frozen=True)
class Scores:
    """One candidate's pass over the evaluation set: what every metric of it is computed from."""

    answers: list[str]  # greedy answers to the held-out questions
    perplexity: float
    knowledge: float | None
    contrast: list[list[tuple[float, int]]]  # per compared question: (nll, tokens) of the real answer, then generic ones


def score_candidate(tokenizer, evaluation: EvaluationSet, candidate: Candidate, *, device, max_new_tokens: int,
                    max_answer_tokens: int, known: dict | None = None) -> Scores:
    """Everything measured of `candidate`. Each held-out prompt is run once for its answer, its perplexity
    and its attribution continuations together (answer_and_score); `known` holds a perplexity and
    knowledge already measured for these weights (the trainer's kept epoch)."""
    known = known or {}
    contrast = contrast_answers(tokenizer, evaluation)
    measure_perplexity = "perplexity" not in known
    groups = [(prompt_ids(tokenizer, candidate.messages(evaluation.system_prompt, reflection.question)),
               ([text_ids(tokenizer, reflection.answer)[:max_answer_tokens]] if measure_perplexity else [])
               + (continuations or []))
              for reflection, continuations in zip(evaluation.held_out, contrast)]
    with candidate.activate(), evaluating(candidate.model):
        answers, scored = answer_and_score(candidate.model, tokenizer, groups, max_new_tokens=max_new_tokens,
                                           device=device)
    first = 1 if measure_perplexity else 0
    return Scores(
        answers=answers,
        perplexity=perplexity_of([row[0] for row in scored]) if measure_perplexity else known["perplexity"],
        knowledge=(known["knowledge"] if "knowledge" in known
                   else knowledge_accuracy(tokenizer, evaluation, candidate, device=device)),
        contrast=[row[first:] for row, continuations in zip(scored, contrast) if continuations is not None])


def quick_scores(tokenizer, evaluation: EvaluationSet, candidate: Candidate, *, device,
                 max_answer_tokens: int) -> dict:
    """The cheap part (no generation): what the trainer checks after every epoch to pick the best one."""
    return {"perplexity": held_out_perplexity(tokenizer, evaluation, candidate, device=device,
                                              max_answer_tokens=max_answer_tokens),
            "knowledge": knowledge_accuracy(tokenizer, evaluation, candidate, device=device)}
