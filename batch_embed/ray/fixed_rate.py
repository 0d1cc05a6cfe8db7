"""The naive baseline: each worker paces itself at a fixed rate, alone (benchmarks only).

This is how a per-actor limiter (such as Ray Data's ``HttpRequestProcessor`` with ``qps``)
behaves: every actor allows itself the whole rate, shares nothing, and learns nothing from
a 429. ``N`` actors therefore send ``N`` times the limit. It implements
:class:`~batch_embed.ratelimit.Limiter` so the workers can run either way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable


class FixedRateLimiter:
    """Spaces this process's requests at ``rate`` per second; 429s change nothing."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf
        self.throttled_count = 0

    async def acquire(self) -> float:
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)
        return self._clock()

    def accepted(self, sent_at: float | None = None) -> None:
        """Nothing to learn."""

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """Counted, and otherwise ignored (no shared budget, no Retry-After)."""
        self.throttled_count += 1

    def flush(self) -> None:
        """Nothing buffered."""
