"""The one retry loop of the Ray workers: one API request under a limiter, until it is
answered, or is the row's error.

The decisions are :mod:`batch_embed.retry`'s: a 429 is reported to the (shared) limiter and
tried again, after its Retry-After or a short backoff, never a row error (bounded only by
``RetryPolicy.max_throttled``); a transient failure (5xx, timeout, dropped connection,
malformed answer) is retried within the policy's attempts and time; a 404 while reading is
:class:`JobLost` after ``NOT_FOUND_RETRIES`` in a row (the caller resubmits); an abort (401,
403, 406, unknown model) raises :class:`RunAborted`, which stops the dataset.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import errors
from ..errors import BatchEmbedError
from ..ratelimit import Limiter
from ..records import ErrorKind
from ..retry import RetryPolicy, Verdict, classify

NOT_FOUND_RETRIES = 3
"""404s in a row while reading a job before it counts as lost (as the poller's)."""
THROTTLE_BACKOFF_ATTEMPT = 4
"""A 429 without Retry-After waits at most the policy's backoff of this attempt."""

_T = TypeVar("_T")


class RowFailure(Exception):
    """The row ends as an error row of ``kind``; ``message`` never holds the key."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class JobLost(Exception):
    """The job answered 404 (expired or unknown): the text must be submitted again."""


class RunAborted(BatchEmbedError):
    """The API refused the run itself (bad key, forbidden, no credits, unknown model)."""


def row_kind(error: errors.ApiError, *, reading: bool) -> ErrorKind:
    """The error kind of a row whose request ended with ``error``."""
    if isinstance(error, errors.JobFailed):
        return ErrorKind.FAILED
    if isinstance(error, errors.BadVector):
        return ErrorKind.BAD_OUTPUT
    return ErrorKind.BAD_OUTPUT if reading else ErrorKind.REJECTED


async def call(
    limiter: Limiter,
    request: Callable[[], Awaitable[_T]],
    *,
    reading: bool,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    honour_retry_after: bool = True,
) -> _T:
    """``request()`` under ``limiter``, retried as the module doc says (a 429's Retry-After
    ignored when not ``honour_retry_after``: the naive baseline of the benchmarks)."""
    attempts = 0
    not_found = 0
    started = clock()
    throttled_since: float | None = None
    while True:
        sent_at = await limiter.acquire()
        try:
            answer = await request()
        except errors.ApiError as err:
            verdict = classify(err, reading=reading)
            if verdict is Verdict.THROTTLED:
                limiter.throttled(err.retry_after, sent_at)
                now = clock()
                throttled_since = now if throttled_since is None else throttled_since
                if now - throttled_since > policy.max_throttled:
                    raise RowFailure(
                        ErrorKind.RETRIES_EXHAUSTED, f"throttled for too long: {err}", 429
                    ) from None
                delay = err.retry_after if honour_retry_after else None
                if delay is None:
                    delay = policy.backoff(min(attempts + 1, THROTTLE_BACKOFF_ATTEMPT), rand)
                await sleep(delay)
                continue
            limiter.accepted(sent_at)
            if verdict is Verdict.ABORT:
                raise RunAborted(f"run aborted: {err}") from None
            if verdict is Verdict.ROW_ERROR:
                raise RowFailure(row_kind(err, reading=reading), str(err), err.status) from None
            if reading and isinstance(err, errors.NotFound):
                not_found += 1
                if not_found >= NOT_FOUND_RETRIES:
                    raise JobLost(str(err)) from None
            else:
                not_found = 0
            attempts += 1
            if not policy.should_retry(attempt=attempts, elapsed=clock() - started):
                raise RowFailure(
                    ErrorKind.RETRIES_EXHAUSTED,
                    f"failed {attempts} times; last: {err}",
                    err.status,
                ) from None
            await sleep(policy.backoff(attempts, rand))
            continue
        limiter.accepted(sent_at)
        return answer
