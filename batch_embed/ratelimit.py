"""Rate control for one request class: adapt down on 429, probe back up, never exceed the cap.

Two parts. :class:`RateController` is pure (every method takes ``now``): it holds the rate
the class may use. A 429 starts a *congestion episode*, and the rate is cut once per
episode (the 429s of requests already in the air belong to the same episode), by what the
server accepted in the ``MEASURE_SECONDS`` before the throttled request was sent (counted
by send time, so answers delayed by the same stall that caused the 429 do not lower it):
less than we sent means that is its limit (a sliding window's), and the rate settles just
under it (``MEASURED_SHARE``); all we sent means we are at the limit and a bunch in
transit overflowed it, and the rate steps back a little (``AT_LIMIT_SHARE``); nothing
measured yet, and it halves (``BETA_BLIND``). A ``Retry-After`` pauses the whole class
(a one-second one, or none, only briefly and only when requests sent after the episode
began are refused too: :meth:`RateController.on_throttled`).
Between 429s the rate grows back along a cubic curve (as TCP CUBIC does): quickly to just
under the rate that last hit the limit, a plateau there, then faster probing beyond it, up
to the configured rate. The class therefore settles just under the server's real limit
instead of oscillating through 429 storms, and returns to the configured rate once 429s
stop.

:class:`AdaptiveLimiter` turns the controller's rate into waiting: it spaces requests at
the current rate (virtual scheduling: each acquire reserves the next slot) and passes
through an ``aiolimiter.AsyncLimiter`` set to the configured rate, the hard ceiling that
no adaptation can overrun.

:class:`Limiter` is what a stage needs of either: ``acquire``, then ``accepted`` or
``throttled`` with the time ``acquire`` returned. :class:`AdaptiveLimiter` is the one-process
limiter; :mod:`batch_embed.ray.shared_limiter` implements it over a budget shared by many
processes.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

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
"""429s within one episode that show the window is full, not overflowed by a bunch. Only
requests sent after the episode began count: a bunch already in the air when the first 429
came back is one piece of evidence, however many of its requests were refused."""
FULL_WINDOW_HOLD = 0.05
"""The class pause at the FULL_WINDOW_429S-th 429 of an episode, doubled at each further
one (up to the Retry-After, or SHORT_RETRY_AFTER without one)."""
PACE_SHARE = 0.99
"""Requests are spaced for this share of the allowed rate. At exactly a sliding window's
limit, the request that closes a window arrives as its first one leaves it, and any jitter
makes it a 429 (with a Retry-After that pauses the class for a second): 1% under, a window
tolerates 10 ms of bunching per second."""
LATE_WAKE = 0.005
"""A paced request that wakes later than this after its slot reserves a new one (once)."""
PACING_TICK = 0.001
"""Paced requests wake on ticks of this many seconds, so one timer serves all due in a tick."""
MEASURED_SHARE = 0.97
"""After an episode, aim this far under the measured accepted rate."""
FULL_PACE = 0.995
"""A measured accepted rate this close to the paced rate means nothing sent was refused..."""
AT_LIMIT_SHARE = 0.99
"""... and the rate steps back only this far (then grows back over RECOVERY_SECONDS)."""


class Limiter(Protocol):
    """Paces one request class: wait for a slot, then report how the request was answered.

    ``sent_at`` is the value :meth:`acquire` returned (on whatever clock the limiter keeps).
    """

    async def acquire(self) -> float:
        """Wait until one request may be sent; return its send time."""
        ...

    def accepted(self, sent_at: float | None = None) -> None:
        """The request sent at ``sent_at`` was answered (not 429)."""
        ...

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """The request sent at ``sent_at`` was answered 429 (``retry_after`` seconds, if said)."""
        ...


@dataclass(slots=True)
class RateController:
    """The current allowed rate (requests/s) of one request class; see the module doc."""

    max_rate: float
    min_rate: float = 0.0
    full_pace: float = FULL_PACE
    """A measured accepted rate this share of the paced rate or more means all we sent
    went through (see FULL_PACE; a budget shared across processes sets it lower)."""
    rate: float = field(init=False)
    hold_until: float = field(default=0.0, init=False)
    throttled: int = field(default=0, init=False)
    episodes: int = field(default=0, init=False)
    _limit_rate: float | None = field(default=None, init=False)
    _share: float = field(default=BETA, init=False)
    _epoch: float = field(default=0.0, init=False)
    _episode_start: float = field(default=-math.inf, init=False)
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

    def on_accepted(self, sent_at: float) -> None:
        """Record a request of this class, sent at ``sent_at``, that was not throttled."""
        if self._first_accept is None:
            self._first_accept = sent_at
        accepted = self._accepted
        accepted.append(sent_at)
        # Answers arrive out of send order by a round trip at most: keep two windows (checked
        # every 32 acceptances; a few more kept meanwhile cost nothing).
        if len(accepted) & 31 == 0:
            horizon = sent_at - 2.0 * self.measure_window
            while accepted and accepted[0] < horizon:
                accepted.popleft()

    @property
    def measure_window(self) -> float:
        """Seconds over which accepted requests are counted.

        At least MEASURE_SECONDS, and long enough to hold about MEASURE_REQUESTS requests,
        so a low rate (50/min) is measured over enough samples to mean something.
        """
        return max(MEASURE_SECONDS, MEASURE_REQUESTS / max(self.rate, self.min_rate))

    def accepted_rate(self, until: float) -> float | None:
        """Requests/s sent in the window before ``until`` that the server accepted; None
        without a full window of history.

        Counted per window (not from the spacing of the acceptances): a server that admits
        N per window often admits them in a burst, and it is N per window that is its limit.
        """
        window = self.measure_window
        if self._first_accept is None or until - self._first_accept < window:
            return None
        start = until - window
        return sum(1 for t in self._accepted if start <= t < until) / window

    def on_throttled(
        self, now: float, retry_after: float | None, sent_at: float | None = None
    ) -> None:
        """Record a 429 at ``now`` (for a request sent at ``sent_at``, when known): cut the
        rate once per episode; pause for Retry-After.

        A Retry-After of over SHORT_RETRY_AFTER pauses the whole class. A shorter one, or none
        (an integer header cannot say less than 1 s, even when a sliding window frees a slot
        in milliseconds), pauses only the throttled request, as its caller does, until the
        episode has seen FULL_WINDOW_429S 429s for requests sent after it began (a bunch of
        requests in transit overflows a window only for milliseconds, and is answered 429
        all together): then the window is full, and the class pauses for FULL_WINDOW_HOLD,
        doubled at each further 429, up to the Retry-After.
        """
        self.throttled += 1
        repeat = now < self._episode_until
        if not repeat:
            self._episode_429s = 1
        elif sent_at is None or sent_at >= self._episode_start:
            self._episode_429s += 1
        if retry_after is not None and retry_after > SHORT_RETRY_AFTER:
            self.hold_until = max(self.hold_until, now + retry_after)
        elif self._episode_429s >= FULL_WINDOW_429S:
            # The window is full for now. A sliding window overfilled by a bunch frees its
            # slots when the bunch leaves it, a few milliseconds later: hold the class
            # briefly, twice as long for every further 429, up to the Retry-After.
            hold = FULL_WINDOW_HOLD * 2.0 ** (self._episode_429s - FULL_WINDOW_429S)
            cap = retry_after if retry_after is not None else SHORT_RETRY_AFTER
            self.hold_until = max(self.hold_until, now + min(hold, cap))
        if repeat:
            return
        hit = self.current(now)
        measured = self.accepted_rate(sent_at if sent_at is not None else now)
        self.episodes += 1
        if measured is not None and measured >= hit * PACE_SHARE * self.full_pace:
            # The server let through all we sent: we are at its limit, not over it, and a
            # bunch in transit overflowed its window. Step back a little, not far.
            self._limit_rate, self._share = hit, AT_LIMIT_SHARE
        elif measured is not None and 0 < measured < hit:
            # The server let through less than we sent: that is its limit; sit just under it.
            self._limit_rate, self._share = measured, MEASURED_SHARE
        else:
            self._limit_rate, self._share = hit, (BETA if measured is not None else BETA_BLIND)
        self.rate = max(self.min_rate, self._limit_rate * self._share)
        self._epoch = self._episode_start = now
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

    async def acquire(self) -> float:
        """Wait until one request may be sent (its slot reserved at the current rate); return
        the time it may go, to hand back to :meth:`accepted` or :meth:`throttled`."""
        ctl = self.controller
        respaced = False
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
            late = 0.0
            # Less than a tick early goes now, as a tick would have woken it (a hold, though,
            # is waited out to the end).
            if start - now >= PACING_TICK or (start > now and ctl.hold_until > now):
                await self._sleep(start - now)
                late = self._now() - start
            # A slot reserved before a 429 episode was paced at the old rate: reserve again.
            # So, once, is one whose wake-up came too late (the loop was blocked): sent now,
            # the requests of a stall go out together, and a sliding window that counts them
            # with the second after overflows (429s a second later).
            if ctl.episodes == episode and self._now() >= ctl.hold_until:
                if late <= LATE_WAKE or respaced:
                    break
                respaced = True
        await self._ceiling.acquire()
        self.acquired += 1
        return self._now()

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

    def accepted(self, sent_at: float | None = None) -> None:
        """Tell the controller a request of this class, sent at ``sent_at`` (the time
        :meth:`acquire` returned; now when not given), went through (not 429)."""
        self.controller.on_accepted(self._now() if sent_at is None else sent_at)

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """Tell the controller a request of this class, sent at ``sent_at`` (the time
        :meth:`acquire` returned), was answered 429."""
        episodes = self.controller.episodes
        now = self._now()
        self.controller.on_throttled(now, retry_after, sent_at)
        if self.controller.episodes != episodes:
            self._next_slot = now  # drop the reservations made at the old rate
