"""Build the messages an engine sees: the mode's system prompt, a window of history, the new turn.

Pure functions. The system prompt comes only from config (the mode's prompt with {displayName}
filled in from config); user text is only ever the content of a user message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import Conversation, PersonalityMode

Message = dict[str, str]
CountTokens = Callable[[list[Message]], int]


class PromptTooLongError(ValueError):
    """The system prompt and the new message alone do not fit the model's context."""


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int


def build_system_prompt(mode: PersonalityMode, display_name: str, emotional_tone: bool, conversation: Conversation) -> str:
    prompt = mode.system_prompt.format(displayName=display_name)
    if emotional_tone:
        prompt = f"{prompt}\n{conversation.emotional_tone_prompt}"
    return prompt


def resolve_sampling(
    mode: PersonalityMode, conversation: Conversation, temperature: float | None, max_tokens: int | None
) -> Sampling:
    """A session's own settings win, then the mode's, then the conversation defaults."""
    if temperature is None:
        temperature = mode.temperature if mode.temperature is not None else conversation.default_temperature
    if max_tokens is None:
        max_tokens = mode.max_tokens or conversation.max_tokens
    return Sampling(temperature=temperature, top_p=mode.top_p, max_tokens=max_tokens)


def window_history(history: Sequence[Message], window: int) -> list[Message]:
    """The last `window` messages, never starting on an assistant turn (it would lack its question)."""
    recent = list(history[-window:]) if window > 0 else []
    while recent and recent[0]["role"] == "assistant":
        recent.pop(0)
    return recent


def trim_to_context(
    system: Message | None,
    history: list[Message],
    new_turn: Message,
    count_tokens: CountTokens,
    context_length: int,
    reserve_tokens: int,
) -> list[Message]:
    """Drop the oldest history (a question with its answer) until the prompt plus the reply fits."""
    budget = context_length - reserve_tokens
    head = [system] if system else []
    history = list(history)
    while True:
        messages = [*head, *history, new_turn]
        if count_tokens(messages) <= budget:
            return messages
        if not history:
            raise PromptTooLongError("message is too long for the model's context")
        history.pop(0)
        while history and history[0]["role"] == "assistant":
            history.pop(0)


def build_messages(
    *,
    system_prompt: str,
    history: Sequence[Message],
    user_text: str,
    window: int,
    count_tokens: CountTokens,
    context_length: int,
    reserve_tokens: int,
) -> list[Message]:
    system = {"role": "system", "content": system_prompt}
    new_turn = {"role": "user", "content": user_text}
    recent = window_history(history, window)
    return trim_to_context(system, recent, new_turn, count_tokens, context_length, reserve_tokens)
