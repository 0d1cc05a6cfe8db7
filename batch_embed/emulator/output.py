"""Rendering a job's ``output``: the provider JSON in the configured shape, or a broken one.

``openai-string`` (the default) serves OpenAI's embeddings object serialized into a JSON
*string*; ``openai-object`` the same object as JSON; ``list`` a bare list of floats;
``embedding`` ``{"embedding": [...]}``; ``embeddings`` ``{"embeddings": [[...]]}``;
``data`` ``{"data": [[...]]}``. Pre-serialized pieces are spliced with ``orjson.Fragment``,
so a vector is serialized once, and a broken one (a ``NaN`` literal) can be served at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from .config import OutputShape
from .markers import BadOutput
from .vectors import count_tokens, vector_from_digest

_GARBAGE = b'{"result":{"values":"<binary tensor omitted>","ok":true},"warnings":[null]}'


def _floats(digest: bytes, dim: int, bad: BadOutput | None, cut: int | None) -> bytes:
    """The JSON list of floats of the vector (its first ``cut``), broken as ``bad`` asks."""
    if bad == "zeros":
        zeros = np.zeros(cut or dim, dtype=np.float32)
        return orjson.dumps(zeros, option=orjson.OPT_SERIALIZE_NUMPY)
    vector = vector_from_digest(digest, dim)
    if cut is not None:  # as Gemini does: a prefix of the full vector, not unit length
        vector = vector[:cut]
        dim = cut
    if bad == "short":
        vector = vector[: dim // 2]
    floats = orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY)
    if bad == "nan":
        # orjson writes NaN as null; a Python provider (json.dumps) writes the NaN literal.
        floats = b"[NaN," + floats[floats.index(b",") + 1 :]
    return floats


def render_provider_json(
    *,
    slug: str,
    text: str,
    digest: bytes,
    dim: int,
    shape: OutputShape,
    bad: BadOutput | None,
    cut: int | None = None,
) -> bytes:
    """The model output as JSON bytes, before any string wrapping."""
    if bad == "garbage":
        return _GARBAGE
    floats = orjson.Fragment(_floats(digest, dim, bad, cut))
    if shape in ("openai-string", "openai-object"):
        tokens = count_tokens(text)
        body: Any = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": floats}],
            "model": slug,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    elif shape == "list":
        body = floats
    elif shape == "embedding":
        body = {"embedding": floats}
    elif shape == "embeddings":
        body = {"embeddings": [floats]}
    else:
        body = {"data": [floats]}
    return orjson.dumps(body)


def render_result_body(
    *,
    request_id: str,
    slug: str,
    text: str,
    digest: bytes,
    dim: int,
    shape: OutputShape,
    bad: BadOutput | None,
    inference_time: float,
    cut: int | None = None,
) -> bytes:
    """The full ``GET /v2/requests/{id}`` body of a COMPLETED job."""
    provider = render_provider_json(
        slug=slug, text=text, digest=digest, dim=dim, shape=shape, bad=bad, cut=cut
    )
    output: Any = provider.decode() if shape == "openai-string" else orjson.Fragment(provider)
    return orjson.dumps(
        {
            "status": "COMPLETED",
            "request_id": request_id,
            "output": output,
            "metrics": {"inference_time": round(inference_time, 4)},
        }
    )
