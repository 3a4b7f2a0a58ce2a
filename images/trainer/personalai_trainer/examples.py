"""Reflections -> chat examples -> token ids with the prompt masked, and the train/validation split.

Each example is [system: persona prompt, user: question, assistant: the person's answer], rendered by
the tokenizer's own chat template (a plain fallback when it has none). Only the answer's tokens are
trained on: the loss on the prompt would teach the model to write questions.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from personalai_contracts import Reflection
from personalai_trainer.augmentation import augment_questions

IGNORE_INDEX = -100  # label value the loss skips (PyTorch's cross-entropy default)

# Used only when the tokenizer ships without a chat template: plain role tags, end of turn = eos.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def build_system_prompt(display_name: str) -> str:
    return (f"You are {display_name}. Answer as {display_name}, in the first person and in your own voice, "
            f"drawing on your own memories, values and way of speaking.")


def build_messages(system_prompt: str, question: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer the fallback template when it has none; True when the fallback was set."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def tokenize_example(tokenizer, messages: list[dict], max_length: int) -> TokenizedExample | None:
    """Token ids for a whole conversation, labels only on the answer; None when the prompt leaves no room."""
    prompt_ids = list(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
    full_ids = list(tokenizer.apply_chat_template(messages, tokenize=True))
    # Templates usually render the prompt as a prefix of the whole; where not, mask the shared prefix.
    prefix = 0
    while prefix < min(len(prompt_ids), len(full_ids)) and prompt_ids[prefix] == full_ids[prefix]:
        prefix += 1
    if prefix >= max_length - 8:  # fewer than 8 answer tokens would be left after truncation
        return None
    full_ids = full_ids[:max_length]
    labels = [IGNORE_INDEX] * prefix + full_ids[prefix:]
    return TokenizedExample(input_ids=full_ids, labels=labels)


def split_train_validation(
    reflections: list[Reflection], fraction: float, seed: int,
) -> tuple[list[Reflection], list[Reflection]]:
    """A split that depends only on the contents and the seed, not on the order of the file."""
    def rank(reflection: Reflection) -> str:
        key = f"{seed}\0{reflection.question}\0{reflection.answer}"
        return hashlib.sha256(key.encode()).hexdigest()

    ordered = sorted(reflections, key=rank)
    if len(ordered) < 2:
        return ordered, []
    held_out = min(len(ordered) - 1, max(1, math.ceil(len(ordered) * fraction)))
    return ordered[held_out:], ordered[:held_out]


def build_examples(
    tokenizer, reflections: list[Reflection], system_prompt: str, max_length: int, *,
    phrasings: int = 0, seed: int = 0,
) -> tuple[list[TokenizedExample], int]:
    """Tokenized examples (each question in `phrasings` extra wordings) and how many did not fit."""
    examples, too_long = [], 0
    for reflection in reflections:
        for question in augment_questions(reflection.question, phrasings, seed):
            example = tokenize_example(tokenizer, build_messages(system_prompt, question, reflection.answer),
                                       max_length)
            if example is None:
                too_long += 1
            else:
                examples.append(example)
    return examples, too_long
