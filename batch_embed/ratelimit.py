"""Rate control for one request class: adapt down on 429, probe back up, never exceed the cap.

Two parts. :class:`RateController` is pure (every method takes ``now``): it holds the rate
the class may use. A 429 starts a *congestion episode*: the rate drops to the lower of
``BETA`` times the rate that hit the limit (half of it when nothing was measured yet) and
the rate the server actually accepted over the last
``MEASURE_SECONDS`` (under a sliding-window limit that is the real limit, so one episode
is enough to settle), once per episode (the 429s of requests already in the air
belong to the same episode), and a ``Retry-After`` pauses the whole class until then
(a one-second one only when 429s keep coming: :meth:`RateController.on_throttled`).
Between 429s the rate grows back along a cubic curve (as TCP CUBIC does): quickly to just
under the rate that last hit the limit, a plateau there, then faster probing beyond it, up
to the configured rate. The class therefore settles just under the server's real limit
instead of oscillating through 429 storms, and returns to the configured rate once 429s
stop.

:class:`AdaptiveLimiter` turns the controller's rate into waiting: it spaces requests at
the current rate (virtual scheduling: each acquire reserves the next slot) and passes
through an ``aiolimiter.AsyncLimiter`` set to the configured rate, the hard ceiling that
no adaptation can overrun.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from .errors import ConfigError

BETA = 0.85
"""Share of the rate kept after a 429 episode."""
BETA_BLIND = 0.5
"""Share kept after a 429 that comes before any measurement of the accepted rate."""
RECOVERY_SECONDS = 4.0
"""Time to grow back to the rate that hit the limit (at least RECOVERY_REQUESTS slots)."""
MEASURED_RECOVERY_SECONDS = 10.0
"""The same, after an episode that measured the server's limit: probe above it slowly."""
RECOVERY_REQUESTS = 20.0
EPISODE_SECONDS = 1.0
"""429s within this long after a reaction belong to the same episode."""
MEASURE_SECONDS = 1.0
"""Accepted requests are counted over at least this window to measure the real rate."""
MEASURE_REQUESTS = 20.0
"""... and over a window long enough to hold about this many requests."""
CEILING_BURST = 0.02
"""The hard ceiling lets through at most this many seconds' worth of requests at once."""
SHORT_RETRY_AFTER = 1.0
"""A Retry-After up to this long pauses only its own request, unless 429s repeat."""
FULL_WINDOW_429S = 3
"""429s within one episode that show the window is full, not overflowed by a bunch."""
PACE_SHARE = 0.99
"""Requests are spaced for this share of the allowed rate. At exactly a sliding window's
limit, the request that closes a window arrives as its first one leaves it, and any jitter
makes it a 429 (with a Retry-After that pauses the class for a second): 1% under, a window
tolerates 10 ms of bunching per second."""
PACING_TICK = 0.001
"""Paced requests wake on ticks of this many seconds, so one timer serves all due in a tick."""
MEASURED_SHARE = 0.97
"""After an episode, aim this far under the measured accepted rate."""


@dataclass(slots=True)
class RateController:
    """The current allowed rate (requests/s) of one request class; see the module doc."""

    max_rate: float
    min_rate: float = 0.0
    rate: float = field(init=False)
    hold_until: float = field(default=0.0, init=False)
    throttled: int = field(default=0, init=False)
    episodes: int = field(default=0, init=False)
    _limit_rate: float | None = field(default=None, init=False)
    _share: float = field(default=BETA, init=False)
    _epoch: float = field(default=0.0, init=False)
    _episode_until: float = field(default=-math.inf, init=False)
    _episode_429s: int = field(default=0, init=False)
    _accepted: deque[float] = field(default_factory=deque, init=False)
    _first_accept: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_rate) and self.max_rate > 0):
            raise ConfigError(f"rate must be a finite number > 0, got {self.max_rate!r}")
        if self.min_rate <= 0:
            self.min_rate = self.max_rate / 100.0
        self.rate = self.max_rate

    def current(self, now: float) -> float:
        """The allowed rate at ``now``, grown along the recovery curve since the last episode."""
        if self._limit_rate is None:
            return self.rate
        top = self._limit_rate
        seconds = MEASURED_RECOVERY_SECONDS if self._share == MEASURED_SHARE else RECOVERY_SECONDS
        k = max(seconds, RECOVERY_REQUESTS / top)
        c = (1.0 - self._share) / k**3
        t = max(0.0, now - self._epoch)
        grown = top * (1.0 + c * (t - k) ** 3)
        self.rate = min(self.max_rate, max(self.min_rate, grown))
        return self.rate

    def on_accepted(self, now: float) -> None:
        """Record a request of this class that the server did not throttle."""
        if self._first_accept is None:
            self._first_accept = now
        self._accepted.append(now)
        self._forget(now)

    @property
    def measure_window(self) -> float:
        """Seconds over which accepted requests are counted.

        At least MEASURE_SECONDS, and long enough to hold about MEASURE_REQUESTS requests,
        so a low rate (50/min) is measured over enough samples to mean something.
        """
        return max(MEASURE_SECONDS, MEASURE_REQUESTS / max(self.rate, self.min_rate))

    def _forget(self, now: float) -> None:
        horizon = now - self.measure_window
        while self._accepted and self._accepted[0] < horizon:
            self._accepted.popleft()

    def accepted_rate(self, now: float) -> float | None:
        """Requests/s the server accepted over the last window; None until a full window.

        Counted per window (not from the spacing of the acceptances): a server that admits
        N per window often admits them in a burst, and it is N per window that is its limit.
        """
        if self._first_accept is None or now - self._first_accept < self.measure_window:
            return None
        self._forget(now)
        return len(self._accepted) / self.measure_window

    def on_throttled(self, now: float, retry_after: float | None) -> None:
        """Record a 429 at ``now``: cut the rate once per episode; pause for Retry-After.

        A Retry-After of over SHORT_RETRY_AFTER pauses the whole class. A shorter one (an
        integer header cannot say less than 1 s, even when a sliding window frees a slot in
        milliseconds) pauses only the throttled request, as its caller does, until the
        episode has seen FULL_WINDOW_429S of them: then the window really is full (a few
        requests bunched in transit overflow it only for milliseconds) and the class pauses.
        """
        self.throttled += 1
        repeat = now < self._episode_until
        self._episode_429s = self._episode_429s + 1 if repeat else 1
        if retry_after is not None and (
            retry_after > SHORT_RETRY_AFTER or self._episode_429s >= FULL_WINDOW_429S
        ):
            self.hold_until = max(self.hold_until, now + retry_after)
        if repeat:
            return
        hit = self.current(now)
        measured = self.accepted_rate(now)
        self.episodes += 1
        if measured is not None and 0 < measured < hit:
            # The server let through less than we sent: that is its limit; sit just under it.
            self._limit_rate, self._share = measured, MEASURED_SHARE
        else:
            self._limit_rate, self._share = hit, (BETA if measured is not None else BETA_BLIND)
        self.rate = max(self.min_rate, self._limit_rate * self._share)
        self._epoch = now
        self._episode_until = now + max(EPISODE_SECONDS, 2.0 / self.rate)


class AdaptiveLimiter:
    """Waits until a request of this class may go: Retry-After holds, pacing, hard ceiling."""

    def __init__(
        self,
        controller: RateController,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.controller = controller
        self._clock = clock
        self._sleep = sleep or self._sleep_on_tick
        self._ticks: dict[float, list[asyncio.Future[None]]] = {}
        self._next_slot = -math.inf
        # The hard ceiling at the configured rate, with a burst of at most CEILING_BURST
        # seconds' worth (and at least one request), so timer jitter does not cost budget.
        burst = max(1.0, controller.max_rate * CEILING_BURST)
        self._ceiling = AsyncLimiter(burst, burst / controller.max_rate)
        self.acquired = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        """Return when one request may be sent; reserve its slot at the current rate."""
        ctl = self.controller
        while True:
            now = self._now()
            episode = ctl.episodes
            interval = 1.0 / (ctl.current(now) * PACE_SHARE)
            # Behind the schedule by at most one slot or one tick (a sleep that woke late):
            # keep the schedule, so wake-up jitter does not leak budget. Further behind
            # (idle): start afresh, so idleness never banks a burst.
            behind = now - self._next_slot
            slack = max(interval, PACING_TICK)
            start = self._next_slot if 0.0 < behind <= slack else max(now, self._next_slot)
            start = max(start, ctl.hold_until)
            self._next_slot = start + interval
            if start > now:
                await self._sleep(start - now)
            # A slot reserved before a 429 episode was paced at the old rate: reserve again.
            if ctl.episodes == episode and self._now() >= ctl.hold_until:
                break
        await self._ceiling.acquire()
        self.acquired += 1

    async def _sleep_on_tick(self, delay: float) -> None:
        """Sleep ``delay`` seconds, rounded up to the next PACING_TICK of the loop's clock.

        Every request due within one tick wakes from one timer, in one loop iteration: at
        thousands of requests/s this is most of the limiter's cost. Waking late by under a
        tick costs no budget: slots stay on their schedule (``acquire``).
        """
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + delay) / PACING_TICK) * PACING_TICK
        waiters = self._ticks.get(tick)
        if waiters is None:
            waiters = self._ticks[tick] = []
            loop.call_at(tick, self._wake, tick)
        waiter = loop.create_future()
        waiters.append(waiter)
        await waiter

    def _wake(self, tick: float) -> None:
        for waiter in self._ticks.pop(tick, ()):
            if not waiter.done():  # a cancelled acquire left its future behind
                waiter.set_result(None)

    def accepted(self) -> None:
        """Tell the controller a request of this class went through (not 429)."""
        self.controller.on_accepted(self._now())

    def throttled(self, retry_after: float | None) -> None:
        """Tell the controller a request of this class was answered 429."""
        episodes = self.controller.episodes
        now = self._now()
        self.controller.on_throttled(now, retry_after)
        if self.controller.episodes != episodes:
            self._next_slot = now  # drop the reservations made at the old rate
