"""Pure retry decisions: what an error means for the run, how long to wait, Retry-After.

Nothing here sleeps or reads a clock: callers pass ``now`` and a random source, so every
decision is a table test. The one retry loop lives in :mod:`batch_embed.submitter` and
:mod:`batch_embed.poller`, which share these functions.
"""

from __future__ import annotations

import datetime
import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from . import errors
from .errors import ConfigError

RETRY_AFTER_CAP = 120.0
"""Longest server-requested delay we honour, in seconds; a larger one is clipped to this."""


class Verdict(enum.Enum):
    """What an API error means for the row or the run."""

    RETRY = "retry"
    """Transient: try the same request again after a delay."""
    THROTTLED = "throttled"
    """429: wait (Retry-After or backoff), slow the request class, try again; never a row error."""
    ROW_ERROR = "row_error"
    """The row is at fault or the job ended badly: record an error row, go on."""
    ABORT = "abort"
    """The run cannot go on (bad key, forbidden, no credits, unknown model)."""


def classify(error: errors.ApiError, *, reading: bool) -> Verdict:
    """Map an API error to a verdict; ``reading`` is True for status polls and result fetches.

    A 404 while reading is a job that expired or vanished (the poller handles it: retry,
    then resubmit); a 404 on a submit means the model slug does not exist: abort.
    """
    if isinstance(error, errors.RateLimited):
        return Verdict.THROTTLED
    if isinstance(error, errors.AuthError | errors.Forbidden | errors.InsufficientCredits):
        return Verdict.ABORT
    if isinstance(error, errors.NotFound):
        return Verdict.RETRY if reading else Verdict.ABORT
    if isinstance(error, errors.BadRequest | errors.JobFailed | errors.BadVector):
        return Verdict.ROW_ERROR
    if isinstance(error, errors.ForeignOrigin):
        return Verdict.ROW_ERROR
    if isinstance(error, errors.ServerError | errors.TransportError | errors.MalformedResponse):
        return Verdict.RETRY
    if isinstance(error, errors.HttpError):
        # An unlisted status: 408, 409, 425 and other 4xx are worth a bounded retry only
        # when they are the transient kind; anything else is the row's error.
        return Verdict.RETRY if error.status in (408, 409, 425) else Verdict.ROW_ERROR
    return Verdict.ROW_ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounds and delays for retrying transient errors (5xx, timeouts, dropped connections).

    Attempt ``n`` (1-based) waits ``backoff(n)``: exponential from ``base`` doubling up to
    ``cap``, with "equal jitter" (half fixed, half random) so synchronized failures spread
    out. A request is retried at most ``max_attempts`` times in all and never after
    ``max_elapsed`` seconds since its first try. 429s are bounded only by ``max_throttled``
    seconds of waiting: they are the server pacing us, not a failure.
    """

    max_attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    max_elapsed: float = 300.0
    max_throttled: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("base", "cap", "max_elapsed", "max_throttled"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before retry number ``attempt`` (1-based), jittered, within (0, cap]."""
        exp = min(self.cap, self.base * 2.0 ** max(0, min(attempt - 1, 60)))
        return exp / 2.0 + rand() * exp / 2.0

    def should_retry(self, *, attempt: int, elapsed: float) -> bool:
        """True when a transient failure on try number ``attempt`` may be tried again."""
        return attempt < self.max_attempts and elapsed < self.max_elapsed


def parse_retry_after(
    value: str | None, *, now: float, cap: float = RETRY_AFTER_CAP
) -> float | None:
    """Parse a ``Retry-After`` header into seconds to wait, clipped to ``[0, cap]``.

    Accepts delay-seconds (``"3"``, also a decimal ``"1.5"``) and an HTTP-date, which is
    compared with ``now`` (Unix time). Returns ``None`` when the header is absent or
    unreadable (including ``nan``), so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            # asctime dates and "-0000" carry no zone; every HTTP-date is GMT (RFC 9110 5.6.7)
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))
