"""Read one HTTP answer's body, bounded: never more than the cap, counted after decompression.

A gateway can answer anything: a result of 1.5 GB, a 2 MB gzip body that inflates to 2 GB,
a 300 MB submit answer. aiohttp (3.13.3 on) inflates ``Content-Encoding: gzip/deflate`` as
the body is read from ``resp.content``, a bounded piece at a time, so reading in chunks and
stopping at the cap means a compressed body is inflated only up to the cap, and the rest of
the answer is never read: the connection is closed instead of drained. A ``Content-Length``
over the cap is refused before a byte of the body is read.

The chunks are joined once into one ``bytes``, which the caller decodes from (a single chunk
is returned as it is, without a copy).
"""

from __future__ import annotations

import aiohttp

from .errors import AnswerTooLarge

DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""The default cap on one answer's body: 4 MiB (a 3072-float result is about 70 KB)."""
MIN_MAX_ANSWER_BYTES = 1024
"""The smallest cap accepted: below it no result of any model would fit."""
CAP_FLAG = "--max-answer-bytes"


def too_large(what: str, cap: int, *, request_id: str | None, length: int | None) -> AnswerTooLarge:
    """The error for an answer over ``cap`` bytes (``length``: its announced size, if any)."""
    size = f" of {length} bytes" if length is not None else ""
    return AnswerTooLarge(
        f"{what}: answer{size} is over the {cap}-byte cap ({CAP_FLAG} {cap}); not read further",
        cap=cap,
        request_id=request_id,
    )


async def read_capped(
    resp: aiohttp.ClientResponse, cap: int, *, what: str, request_id: str | None = None
) -> bytes:
    """Return the (decompressed) body of ``resp``; raise AnswerTooLarge past ``cap`` bytes.

    At most ``cap + 1`` bytes are ever taken from the stream: the one byte over is what
    proves the body too long.
    """
    length = resp.content_length
    if length is not None and length > cap:
        raise too_large(what, cap, request_id=request_id, length=length)
    chunks: list[bytes] = []
    total = 0
    content = resp.content
    while True:
        chunk = await content.read(cap + 1 - total)
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise too_large(what, cap, request_id=request_id, length=None)
        chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)
