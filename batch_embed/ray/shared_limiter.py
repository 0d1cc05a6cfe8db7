"""A :class:`~batch_embed.ratelimit.Limiter` over the cluster's budget actor.

Each worker process keeps a few granted slots (wall-clock send times) of one request class
and asks the budget actor for more when they run out: as many as requests are waiting, so
one round trip serves a burst. ``acquire`` sleeps until its slot and returns the real send
time. Acceptances are batched and reported with the next grant (or once ``REPORT_EVERY``
are buffered or ``REPORT_SECONDS`` have passed); a 429 is reported at once, with the
acceptances before it, and drops the slots this worker holds, which were paced at the
rate the 429 just cut.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .budget import RequestClass
from .slots import Grant

REPORT_EVERY = 32
REPORT_SECONDS = 0.1
MIN_RETRY = 0.005
"""Shortest wait before asking again after a grant of no slots."""
STALE_SLOT = 0.03
"""A granted slot this far in the past is dropped, not used: sending it late would bunch."""


class SharedLimiter:
    """Paces one request class of this process from the shared budget; see the module doc."""

    def __init__(
        self,
        budget: Any,
        cls: RequestClass,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budget = budget
        self._cls = cls
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque()
        self._waiting = 0
        self._fetch: asyncio.Future[None] | None = None
        self._accepted: list[float] = []
        self._reported_at = clock()
        self.acquired = 0
        self.throttled_count = 0

    async def acquire(self) -> float:
        """Wait for a granted slot and its time; return the send time (Unix seconds)."""
        self._waiting += 1
        try:
            while True:
                slot = await self._next_slot()
                delay = slot - self._clock()
                if delay < -STALE_SLOT:
                    continue
                if delay > 0:
                    await self._sleep(delay)
                self.acquired += 1
                return self._clock()
        finally:
            self._waiting -= 1

    async def _next_slot(self) -> float:
        while not self._slots:
            if self._fetch is None:
                self._fetch = asyncio.ensure_future(self._refill())
            # Shielded: one acquire cancelled does not cancel the grant the others wait for.
            await asyncio.shield(self._fetch)
        return self._slots.popleft()

    async def _refill(self) -> None:
        """Ask the budget for as many slots as requests wait; the state is updated before
        the task ends, so no waiter ever sees a finished fetch with its slots not yet in."""
        accepted, self._accepted = self._accepted, []
        self._reported_at = self._clock()
        try:
            grant: Grant = await self._budget.grant.remote(
                self._cls, max(1, self._waiting), accepted
            )
            self._slots.extend(grant.times)
            if not grant.times:
                await self._sleep(max(MIN_RETRY, grant.retry_at - self._clock()))
        finally:
            self._fetch = None

    def accepted(self, sent_at: float | None = None) -> None:
        """Buffer an acceptance; report the buffer when it is full or old."""
        self._accepted.append(self._clock() if sent_at is None else sent_at)
        now = self._clock()
        if len(self._accepted) >= REPORT_EVERY or now - self._reported_at >= REPORT_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Report the buffered acceptances now (fire and forget)."""
        self._reported_at = self._clock()
        if self._accepted:
            accepted, self._accepted = self._accepted, []
            self._budget.report.remote(self._cls, accepted)

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """Report a 429 (with the acceptances before it) and drop the slots held here."""
        self.throttled_count += 1
        accepted, self._accepted = self._accepted, []
        self._reported_at = self._clock()
        self._budget.throttled.remote(self._cls, retry_after, sent_at, accepted)
        self._slots.clear()
