"""Sliding-window rate limits, one per request class (submit, read, shared).

A request is rejected when the window already holds ``count`` ACCEPTED requests: rejected
ones (the 429s) never consume budget, so a client hammering a full window is not punished
beyond its 429s, and the ``Retry-After`` it gets is exact.
"""

from __future__ import annotations

import math
from collections import deque

from .config import parse_rate


class SlidingWindow:
    """At most ``count`` accepted requests in any ``window`` seconds (times from the caller)."""

    __slots__ = ("_times", "count", "spec", "window")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.count, self.window = parse_rate(spec)
        self._times: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until a slot frees; 0.0 when a request may be accepted now."""
        times = self._times
        cutoff = now - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if len(times) < self.count:
            return 0.0
        return times[0] - cutoff

    def record(self, now: float) -> None:
        """Count one accepted request at ``now`` (call only after :meth:`wait` said 0)."""
        self._times.append(now)


def retry_after_seconds(wait: float) -> int:
    """``Retry-After`` in whole seconds for a wait: rounded up, at least 1."""
    return max(1, math.ceil(wait))
