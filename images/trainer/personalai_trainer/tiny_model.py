"""A tiny Mistral-architecture model and tokenizer, built locally from a config.

No model hub is reachable in tests, CI or the demo, so this writes a real Mistral model (random
weights, a few hundred thousand parameters) and a byte-level BPE tokenizer trained on the spot,
with a Mistral-style chat template, into a folder that `from_pretrained` loads like any other.

    python -m personalai_trainer.tiny_model /tmp/tiny-mistral
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

# Mistral-Instruct's template, reduced to what the tiny tokenizer knows; the system prompt rides in
# the first user turn as in Mistral's own template.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
    "{% set turns = messages[1:] if system else messages %}"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + (system + '\\n\\n' if loop.first and system else '') + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]"]

# Enough everyday English for the BPE merges to form real words; callers may add their own text.
BASE_CORPUS = """\
I grew up in a small town where everybody knew each other, and my family taught me to work hard.
What matters most to me is the people I love, honesty, and doing the right thing when nobody watches.
When I feel stressed about work I take a walk, breathe, and write down what is really bothering me.
My advice is to be patient with yourself, to ask for help, and to remember that hard times pass.
Thank you for asking. I remember summers at the lake with my father, fishing and talking for hours.
The best decision I ever made was to change careers and follow what made me feel alive.
I learned from my mistakes that pride gets in the way, and that saying sorry is a strength.
Friendship, family, faith, career, travel, health, love, childhood, regrets, hopes and dreams.
""".splitlines()


def build_tokenizer(extra_texts: Iterable[str] = (), vocab_size: int = 1024):
    """A byte-level BPE tokenizer (any text encodes, nothing is unknown) with the chat template set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*BASE_CORPUS, *extra_texts], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["[INST]", "[/INST]"],
        model_max_length=2048,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    path: str | Path,
    *,
    extra_texts: Iterable[str] = (),
    hidden_size: int = 64,
    layers: int = 2,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tiny Mistral model and its tokenizer to `path`; returns the path."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(extra_texts, vocab_size=vocab_size)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=2048,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / "personalai-tiny.json").write_text(json.dumps({"seed": seed, "parameters": model.num_parameters()}))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_model(args.path, seed=args.seed))


if __name__ == "__main__":
    main()
