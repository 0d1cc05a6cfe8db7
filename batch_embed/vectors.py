"""Turn a job's ``output`` into a float32 vector, accepting every shape the gateway may send.

The gateway passes the provider's JSON through, sometimes as a JSON *string* holding it.
Accepted, in this order (segmind-v2.md): OpenAI's ``data[0].embedding``; a bare list of
floats; ``{"embedding": [...]}``; ``{"embeddings": [[...]]}``; ``{"data": [[...]]}``.
Anything else, a vector of the wrong length, one holding NaN/inf, or one of all zeros is a
:class:`~batch_embed.errors.BadVector` quoting the first 200 characters of the output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from .errors import BadVector, excerpt

Vector = npt.NDArray[np.float32]


def _candidate(output: Any) -> Any:
    """Return the list that should hold the vector, or None when no known shape matches."""
    if isinstance(output, list):
        if output and isinstance(output[0], list):  # a one-row batch: [[...]]
            return output[0] if len(output) == 1 else None
        return output
    if not isinstance(output, dict):
        return None
    data = output.get("data")
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(first, dict) and "embedding" in first:
        return first["embedding"]
    if "embedding" in output:
        return output["embedding"]
    embeddings = output.get("embeddings")
    if isinstance(embeddings, list) and embeddings and isinstance(embeddings[0], list):
        return embeddings[0]
    if isinstance(first, list):
        return first
    return None


def parse_output(output: Any, *, dim: int, request_id: str | None = None) -> Vector:
    """Extract and validate the vector from a COMPLETED job's ``output`` value."""
    raw = output
    if isinstance(output, str | bytes):
        try:
            output = orjson.loads(output)
        except orjson.JSONDecodeError:
            raise _bad("output is a string that is not JSON", raw, request_id) from None
    values = _candidate(output)
    if not isinstance(values, list) or not values:
        raise _bad("output has no embedding in any known shape", raw, request_id)
    try:
        array = np.asarray(values)
        # numpy would read "0.5" strings and true/false as numbers: only JSON numbers count
        if array.dtype.kind not in "iufO":
            raise TypeError(array.dtype)
        with np.errstate(over="ignore"):  # beyond float32's range: inf, rejected below
            vector = array.astype(np.float32)
    except (TypeError, ValueError, OverflowError):
        raise _bad("embedding holds non-numeric values", raw, request_id) from None
    if vector.ndim != 1:
        raise _bad(f"embedding has shape {vector.shape}, not a flat list", raw, request_id)
    return validate_vector(vector, dim=dim, raw=raw, request_id=request_id)


def validate_vector(
    vector: Vector, *, dim: int, raw: Any = "", request_id: str | None = None
) -> Vector:
    """Check length, finiteness and non-zeroness; return the vector or raise BadVector."""
    if vector.shape != (dim,):
        raise _bad(f"embedding has {vector.size} values, expected {dim}", raw, request_id)
    if not np.isfinite(vector).all():
        raise _bad("embedding holds NaN or infinite values", raw, request_id)
    if not vector.any():
        raise _bad("embedding is all zeros", raw, request_id)
    return vector


def _bad(reason: str, raw: Any, request_id: str | None) -> BadVector:
    if isinstance(raw, str | bytes):
        shown = excerpt(raw)
    else:
        try:
            shown = excerpt(orjson.dumps(raw, default=str))
        except TypeError:  # e.g. an int beyond 64 bits
            shown = excerpt(repr(raw))
    return BadVector(f"{reason}: {shown}", request_id=request_id, detail=reason, body_excerpt=shown)
