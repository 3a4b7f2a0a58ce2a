"""The base model's tokenizer and chat template, for every engine.

The local engine generates with it; the remote ones use it to trim history to the context and (TGI)
to render the prompt exactly as the model was trained on. Where the tokenizer is not on this
machine (a remote engine serving a hub model), counts fall back to an estimate that over-counts.
"""

from __future__ import annotations

from personalai_contracts.paths import resolve

Message = dict[str, str]

# A conservative guess for text without a tokenizer: English averages ~4 characters a token.
CHARS_PER_TOKEN_ESTIMATE = 3
TOKENS_PER_MESSAGE_ESTIMATE = 8
DEFAULT_CONTEXT_LENGTH = 4096


def resolve_base_model(base_model: str, model_cache: str | None) -> str:
    """A local dir (through the path prefix) when there is one, else the hub id as given."""
    local = resolve(base_model)
    if local.is_dir():
        return str(local)
    if model_cache:
        cached = resolve(model_cache) / base_model
        if cached.is_dir():
            return str(cached)
    return base_model


class ChatTokenizer:
    def __init__(self, tokenizer, context_length: int | None = None):
        self.tokenizer = tokenizer
        limit = getattr(tokenizer, "model_max_length", None) or DEFAULT_CONTEXT_LENGTH
        # Tokenizers without a limit report a huge sentinel value.
        if limit > 1_000_000:
            limit = DEFAULT_CONTEXT_LENGTH
        self.context_length = min(context_length or limit, limit) if context_length else limit

    @classmethod
    def load(cls, base_model: str, model_cache: str | None, context_length: int | None = None) -> ChatTokenizer:
        from transformers import AutoTokenizer

        source = resolve_base_model(base_model, model_cache)
        cache_dir = str(resolve(model_cache)) if model_cache else None
        tokenizer = AutoTokenizer.from_pretrained(source, cache_dir=cache_dir)
        return cls(tokenizer, context_length)

    def render(self, messages: list[Message]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_chat(self, messages: list[Message]) -> list[int]:
        # The template already writes the BOS token, so no special tokens are added again.
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def encode_prompt(self, prompt: str) -> list[int]:
        bos = self.tokenizer.bos_token
        return self.tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]

    def count(self, messages: list[Message]) -> int:
        return len(self.encode_chat(messages))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def eos_ids(self) -> set[int]:
        eos = self.tokenizer.eos_token_id
        return {eos} if isinstance(eos, int) else set(eos or ())


class EstimatingTokenizer(ChatTokenizer):
    """Counts without a tokenizer: an over-estimate, so trimming errs on the safe side."""

    def __init__(self, context_length: int | None = None):
        self.tokenizer = None
        self.context_length = context_length or DEFAULT_CONTEXT_LENGTH

    def count(self, messages: list[Message]) -> int:
        return sum(len(m["content"]) // CHARS_PER_TOKEN_ESTIMATE + TOKENS_PER_MESSAGE_ESTIMATE for m in messages)

    def render(self, messages: list[Message]) -> str:
        raise RuntimeError("rendering a prompt needs the base model's tokenizer on this machine")


def load_chat_tokenizer(base_model: str, model_cache: str | None, context_length: int | None) -> ChatTokenizer:
    """The real tokenizer when it can be found here, else the estimating one."""
    try:
        return ChatTokenizer.load(base_model, model_cache, context_length)
    except (OSError, ValueError):
        return EstimatingTokenizer(context_length)
