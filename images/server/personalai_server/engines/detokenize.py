"""Streaming text that never splits a character, whatever the engine hands over.

A byte-level tokenizer can put one UTF-8 character (an accent, an emoji) across several tokens, so
decoding a token alone gives U+FFFD. `IncrementalDetokenizer` is the usual incremental decode (as
TGI and vLLM do it): it decodes the tokens since the last piece it emitted, with the piece before
as context, and emits only once the text no longer ends in U+FFFD; `flush` gives what is left.

Remote engines hand over text, not bytes; the one way such text can still be split is a UTF-16
surrogate pair cut between two JSON events ("\\ud83d" then "\\ude00"), which would not even encode
as UTF-8. `TextPieceJoiner` holds a trailing high surrogate back until its partner arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable

REPLACEMENT = "\ufffd"

_SURROGATE = re.compile("[\ud800-\udfff]")


class IncrementalDetokenizer:
    """Token ids in, one at a time; text pieces out, each ending on a whole character."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        # ids[prefix:read] is the last emitted piece, decoded again with the new tokens so that a
        # tokenizer that strips or merges at the start of a decode (sentencepiece's leading space)
        # gives the same text as one decode of the whole reply.
        self._prefix = 0
        self._read = 0
        self._prefix_text = ""

    def push(self, token_id: int) -> str:
        """The text completed by this token: "" while the decoded tail ends mid-character."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back, once no token will follow (U+FFFD if cut mid-character)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        text = self._decode(self._ids[self._prefix:])
        if len(text) <= len(self._prefix_text) or (text.endswith(REPLACEMENT) and not final):
            return ""
        piece = text[len(self._prefix_text):]
        self._prefix, self._read = self._read, len(self._ids)
        self._prefix_text = self._decode(self._ids[self._prefix:self._read])
        return piece


class TextPieceJoiner:
    """Text pieces in (a remote engine's deltas); pieces out that never end in half a surrogate pair."""

    def __init__(self) -> None:
        self._held = ""

    def push(self, piece: str) -> str:
        text, self._held = self._held + piece, ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._held = text[:-1], text[-1]
        return _whole_characters(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return _whole_characters(held)


def _whole_characters(text: str) -> str:
    """Surrogate pairs joined into their character; a lone surrogate (unencodable) becomes U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
