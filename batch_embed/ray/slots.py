"""Send slots for a budget shared by many processes: the pure part of the budget actor.

A :class:`SlotBook` holds one request class's :class:`~batch_embed.ratelimit.RateController`
(the one rate algorithm of the package) and hands out send times spaced at its current rate,
several at a time: a worker asks for ``k`` slots and gets up to ``k`` wall-clock times, as
many as fall within ``LEASE_SECONDS`` of now (none, and when to ask again, if the next
free slot is later: slots are never reserved further ahead). Granting ahead keeps the budget
actor out of the hot path (one call per lease, not per request), and the short lease bounds
how far a rate cut can lag: slots already granted at the old rate cover at most one lease.

A 429 reported by any worker goes to the controller, which cuts the rate for everyone and
may pause the class (``hold_until``); the worker that saw it drops the slots it holds.
Accepted sends are reported back in bulk, by send time, so the controller measures what
the server let through, as it does in one process.

Every method takes ``now`` (Unix time, from ``time.time`` in the actor: slot times cross
processes, so they are on the wall clock); nothing here sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..ratelimit import PACE_SHARE, RateController

LEASE_SECONDS = 0.25
"""A grant covers at most this far ahead of now (but always holds one slot)."""
MAX_GRANT = 64
"""The most slots one grant may hold, whatever is asked."""
HEADROOM = 0.96
"""A shared budget's controller is set to this share of the rate asked for. One process
sends within a millisecond of its slot (and paces at ratelimit.PACE_SHARE, 1% under); a
worker in another process hears of its slot a round trip to the budget actor later and
shares the CPU with its batch's decoding, so its sends can be tens of milliseconds late.
Against a sliding window, a send late by more than the slack makes a later on-time send the
window's one too many (a 429); 5% under in all leaves ~50 ms of lateness per second. It is
a smaller rate, not a sparser pacing, so the controller's at-the-limit test (all sent was
accepted) still holds."""
SHARED_FULL_PACE = 0.95
"""The controller's at-the-limit test for a shared budget: a measured accepted rate this
share of the paced rate means all that was sent went through. The controller counts the
sends of a window of ratelimit.MEASURE_REQUESTS / rate seconds, which holds 19.8 paced
sends and so counts 19: 4% under the paced rate when every send was accepted. Judged at
ratelimit.FULL_PACE, a 429 from a bunch at the limit looked like a lower server limit, and
the shared rate sat 7% under it for 10 s (89% of the budget used in a 10 s run; 95%
without the 429). Sends from many processes are never paced finely enough to read closer."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Send times (Unix seconds, ascending) granted to one worker, and the episode they
    were paced in; no times when the next free slot is beyond the lease: ask again at
    ``retry_at``."""

    times: tuple[float, ...]
    episode: int
    retry_at: float = 0.0


class SlotBook:
    """Grants send slots of one request class at its controller's current rate."""

    def __init__(self, controller: RateController, *, lease: float = LEASE_SECONDS) -> None:
        if not (math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a finite number > 0, got {lease!r}")
        self.controller = controller
        self.lease = lease
        self.granted = 0
        self._next = -math.inf

    def grant(self, k: int, now: float) -> Grant:
        """Up to ``k`` (>= 1) send times from the next free slot on, spaced at the current
        rate, none later than the lease; none at all when the next free slot is later.

        Behind the schedule by at most one slot (a worker asked a moment late) keeps it, so
        request round trips do not leak budget; further behind (idle), it starts afresh at
        ``now``, so idleness never banks a burst. A Retry-After hold moves the start past it.
        """
        ctl = self.controller
        interval = 1.0 / (ctl.current(now) * PACE_SHARE)
        behind = now - self._next
        start = self._next if 0.0 < behind <= interval else max(now, self._next)
        start = max(start, ctl.hold_until)
        if start > now + self.lease:
            # Every slot of the lease is in other workers' hands (or the class is held).
            return Grant((), ctl.episodes, retry_at=start - self.lease)
        room = math.floor((now + self.lease - start) / interval) + 1
        n = max(1, min(k, MAX_GRANT, room))
        times = tuple(start + i * interval for i in range(n))
        self._next = start + n * interval
        self.granted += n
        return Grant(times, ctl.episodes)

    def accepted(self, sent_ats: Iterable[float]) -> None:
        """Record requests sent at ``sent_ats`` that were answered without a 429."""
        for sent_at in sent_ats:
            self.controller.on_accepted(sent_at)

    def throttled(self, now: float, retry_after: float | None, sent_at: float | None) -> int:
        """Record a 429 at ``now`` for a request sent at ``sent_at``; return the episode.

        The schedule is not moved back (as a one-process limiter's is): the slots granted
        before the 429 are in other workers' hands and will be used, so the next grant
        starts after them, at the cut rate (or after the hold).
        """
        self.controller.on_throttled(now, retry_after, sent_at)
        return self.controller.episodes


@dataclass(frozen=True, slots=True)
class ClassStats:
    """One request class as the budget sees it."""

    rate: float
    max_rate: float
    granted: int
    throttled: int
    episodes: int


def shared_controller(rate: float) -> RateController:
    """The controller of a class whose budget ``rate`` (requests/s) is shared across
    processes: ``HEADROOM`` of it."""
    return RateController(rate * HEADROOM, full_pace=SHARED_FULL_PACE)


def class_stats(book: SlotBook, now: float) -> ClassStats:
    """The figures of one class at ``now``."""
    ctl = book.controller
    return ClassStats(ctl.current(now), ctl.max_rate, book.granted, ctl.throttled, ctl.episodes)
