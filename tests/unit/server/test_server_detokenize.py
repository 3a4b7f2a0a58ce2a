"""Streamed text never splits a character: the incremental detokenizer and the remote-piece joiner.

The tokenizer is the tiny model's real byte-level BPE, which knows no accents or emoji as tokens,
so every such character arrives across several tokens, as a small real model's would.
"""

from __future__ import annotations

import random

import pytest

from personalai_server.engines.detokenize import IncrementalDetokenizer, TextPieceJoiner

pytestmark = pytest.mark.unit

TEXT = "Café naïve — 😀👍🏽 日本語"


@pytest.fixture(scope="module")
def tokenizer():
    from personalai_trainer.tiny_model import build_tokenizer

    return build_tokenizer()


def decoder(tokenizer):
    # As the engines decode (ChatTokenizer.decode).
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def stream(tokenizer, ids: list[int]) -> tuple[list[str], str]:
    """The pieces pushed token by token, and the flush at the end."""
    detokenizer = IncrementalDetokenizer(decoder(tokenizer))
    return [detokenizer.push(token) for token in ids], detokenizer.flush()


def byte_tokens(tokenizer, text: str) -> list[int]:
    """One token per UTF-8 byte: every multi-byte character split as far as it goes."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    alphabet = bytes_to_unicode()
    return tokenizer.convert_tokens_to_ids([alphabet[byte] for byte in text.encode("utf-8")])


def test_tokens_of_the_text_do_split_characters(tokenizer):
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    alone = [tokenizer.decode([token]) for token in ids]
    # The premise of the other tests: decoded one by one, these tokens give broken characters.
    assert sum("\ufffd" in text for text in alone) >= 10
    assert tokenizer.decode(ids) == TEXT


@pytest.mark.parametrize("split", ["bpe", "bytes"])
def test_pieces_hold_whole_characters_and_join_to_the_text(tokenizer, split):
    ids = tokenizer.encode(TEXT, add_special_tokens=False) if split == "bpe" else byte_tokens(tokenizer, TEXT)
    pieces, tail = stream(tokenizer, ids)
    assert all("\ufffd" not in piece for piece in pieces)
    assert tail == ""
    assert "".join(pieces) == decoder(tokenizer)(ids) == TEXT
    # Nothing is held longer than it must: after each token, all but the unfinished character is out.
    decode = decoder(tokenizer)
    for count in range(1, len(ids) + 1):
        assert "".join(pieces[:count]) == decode(ids[:count]).removesuffix("\ufffd")


def test_byte_tokens_give_each_character_whole_once_its_last_byte_is_in(tokenizer):
    pieces, _ = stream(tokenizer, byte_tokens(tokenizer, TEXT))
    assert [piece for piece in pieces if piece] == [*"Café", " ", *"naïve", " ", "—", " ", *"😀👍🏽", " ", *"日本語"]


def test_special_tokens_inside_the_reply_are_skipped(tokenizer):
    ids = byte_tokens(tokenizer, "é😀")
    ids.insert(1, tokenizer.convert_tokens_to_ids("[INST]"))  # between the two bytes of "é"
    pieces, tail = stream(tokenizer, ids)
    assert "".join(pieces) + tail == "é😀"
    assert all("\ufffd" not in piece for piece in pieces)


def test_a_reply_cut_mid_character_flushes_what_is_left(tokenizer):
    ids = byte_tokens(tokenizer, "ok 😀")[:-2]  # max_tokens reached two bytes before the emoji ends
    pieces, tail = stream(tokenizer, ids)
    assert "".join(pieces) == "ok "
    # The full decode ends in U+FFFD too: the flush gives the reply exactly as it was generated.
    assert tail == "\ufffd" and "".join(pieces) + tail == decoder(tokenizer)(ids)


def test_any_token_sequence_streams_to_its_full_decode(tokenizer):
    rng = random.Random(7)
    decode = decoder(tokenizer)
    for _ in range(500):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randint(1, 16))]
        pieces, tail = stream(tokenizer, ids)
        assert "".join(pieces) + tail == decode(ids)
        # Only a byte sequence that is invalid in the full text too may show U+FFFD mid-piece.
        assert not any(piece.endswith("\ufffd") for piece in pieces)


def test_joiner_keeps_a_surrogate_pair_cut_between_pieces_together():
    joiner = TextPieceJoiner()
    # What json.loads gives for "\ud83d" then "\ude00!": halves of one emoji, in two events.
    pieces = [joiner.push("hi \ud83d"), joiner.push("\ude00!"), joiner.push(" ü"), joiner.flush()]
    assert pieces == ["hi ", "😀!", " ü", ""]
    "".join(pieces).encode("utf-8")  # raises if a lone surrogate got through


def test_joiner_turns_a_lone_surrogate_into_a_replacement_character():
    joiner = TextPieceJoiner()
    pieces = [joiner.push("\ude00a"), joiner.push("b\ud83d"), joiner.flush()]
    # Unpaired halves cannot be encoded as UTF-8 at all; U+FFFD is what a decoder would show.
    assert pieces == ["\ufffda", "b", "\ufffd"]
