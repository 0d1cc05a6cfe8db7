"""Tests of rate control: the pure RateController with an injected ``now``, and the
AdaptiveLimiter with a fake clock and a recording sleep (plus one short real-time check)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable

import pytest

from batch_embed import ratelimit
from batch_embed.errors import ConfigError
from batch_embed.ratelimit import (
    BETA,
    EPISODE_SECONDS,
    RECOVERY_REQUESTS,
    RECOVERY_SECONDS,
    AdaptiveLimiter,
    RateController,
)
from batch_embed.ratelimit import (
    PACE_SHARE as PACE,
)

# The share kept after a 429 that comes before anything was measured (BETA if the module
# does not distinguish that case).
BLIND = getattr(ratelimit, "BETA_BLIND", BETA)
T0 = 100.0


def recovery_time(top: float, *, measured: bool = False) -> float:
    seconds = RECOVERY_SECONDS
    if measured:
        seconds = getattr(ratelimit, "MEASURED_RECOVERY_SECONDS", RECOVERY_SECONDS)
    return max(seconds, RECOVERY_REQUESTS / top)


def accept_steadily(ctl: RateController, *, rate: float, start: float, end: float) -> None:
    """Record accepted requests at ``rate`` per second in (start, end), mid-slot."""
    if not hasattr(ctl, "on_accepted"):
        return
    n = round((end - start) * rate)
    for i in range(n):
        ctl.on_accepted(start + (i + 0.5) / rate)


# -- RateController -----------------------------------------------------------------------------


def test_starts_at_max_rate_and_stays_there_without_429s() -> None:
    ctl = RateController(max_rate=10.0)
    assert ctl.rate == 10.0
    for now in (0.0, T0, 1e6, -5.0):
        assert ctl.current(now) == 10.0
    assert ctl.hold_until == 0.0
    assert ctl.episodes == 0 and ctl.throttled == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_max_rate_must_be_finite_and_positive(bad: float) -> None:
    with pytest.raises(ConfigError, match="rate"):
        RateController(max_rate=bad)


def test_default_min_rate_is_a_hundredth_of_max_rate() -> None:
    assert RateController(max_rate=50.0).min_rate == 0.5
    assert RateController(max_rate=50.0, min_rate=-3.0).min_rate == 0.5
    assert RateController(max_rate=50.0, min_rate=2.0).min_rate == 2.0


def test_a_blind_429_cuts_once_per_episode() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, None)
    cut = 10.0 * BLIND
    assert ctl.rate == pytest.approx(cut)
    assert ctl.current(T0) == pytest.approx(cut)
    # 429s of requests already in the air, within the episode: no further cut
    for dt in (0.0, 0.1, 0.5, EPISODE_SECONDS * 0.99):
        ctl.on_throttled(T0 + dt, None)
        assert ctl.episodes == 1
    assert ctl.throttled == 5


def test_a_one_second_retry_after_pauses_the_class_only_when_429s_keep_coming() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, 1.0, sent_at=T0 - 0.001)  # the first 429: only its request waits
    # requests sent before the episode began: one bunch that overflowed the window
    for dt in (0.001, 0.002, 0.003):
        ctl.on_throttled(T0 + dt, 1.0, sent_at=T0 - 0.002 + dt / 4)
    assert ctl.hold_until == 0.0 and ctl.episodes == 1
    # requests sent after it began are refused too: the window is full for now
    ctl.on_throttled(T0 + 0.1, 1.0, sent_at=T0 + 0.09)
    assert ctl.hold_until == 0.0
    ctl.on_throttled(T0 + 0.2, 1.0, sent_at=T0 + 0.19)  # the third: a short class pause
    assert ctl.hold_until == pytest.approx(T0 + 0.2 + ratelimit.FULL_WINDOW_HOLD)
    ctl.on_throttled(T0 + 0.3, 1.0, sent_at=T0 + 0.29)  # and twice as long at each further one
    assert ctl.hold_until == pytest.approx(T0 + 0.3 + 2 * ratelimit.FULL_WINDOW_HOLD)
    for i in range(10):  # never longer than the Retry-After
        ctl.on_throttled(T0 + 0.4 + i / 100, 1.0, sent_at=T0 + 0.39 + i / 100)
    assert ctl.hold_until == pytest.approx(T0 + 0.49 + 1.0)
    assert ctl.episodes == 1
    ctl.on_throttled(T0 + 5.0, 1.0)  # a new episode counts afresh
    assert ctl.hold_until == pytest.approx(T0 + 1.49) and ctl.episodes == 2
    later = RateController(max_rate=10.0)
    later.on_throttled(T0, 1.5)  # more than a second pauses the class at once
    assert later.hold_until == T0 + 1.5
    assert ctl.current(T0 + 0.01) < 10.0 * BLIND * 1.01


def test_without_retry_after_a_full_window_pauses_the_class_at_most_a_second() -> None:
    ctl = RateController(max_rate=10.0)
    for i in range(12):  # send times unknown: every 429 of the episode counts
        ctl.on_throttled(T0 + i / 100, None)
    assert ctl.hold_until == pytest.approx(T0 + 0.11 + ratelimit.SHORT_RETRY_AFTER)


def test_the_accepted_rate_is_measured_by_send_time() -> None:
    # The stall that made the 429 also delayed the answers to the requests sent just
    # before it: counted by arrival, they would lower the measure (and the rate) by
    # the stall's share. Counted by send time, the window before the 429's request is full.
    ctl = RateController(max_rate=200.0)
    accept_steadily(ctl, rate=150.0, start=T0 - 3.0, end=T0 - 0.1)
    accept_steadily(ctl, rate=150.0, start=T0 - 0.1, end=T0)  # answered late, recorded now
    assert ctl.accepted_rate(T0) == pytest.approx(150.0, abs=1.0)
    ctl.on_throttled(T0 + 0.15, None, sent_at=T0)
    assert ctl.rate == pytest.approx(150.0 * ratelimit.MEASURED_SHARE, rel=0.01)


def test_a_429_at_full_measured_rate_steps_back_a_little() -> None:
    ctl = RateController(max_rate=10.0)
    # The server accepted everything we sent: we are at its limit, not over it (a bunch in
    # transit overflowed its window), so the rate steps back only a little.
    accept_steadily(ctl, rate=10.0 * PACE, start=T0 - 2 * ctl.measure_window, end=T0)
    ctl.on_throttled(T0, None)
    assert ctl.rate == pytest.approx(10.0 * ratelimit.AT_LIMIT_SHARE)
    assert ctl.episodes == 1
    for dt in (0.2, 0.9):
        ctl.on_throttled(T0 + dt, None)
    assert ctl.episodes == 1
    assert ctl.current(T0) == pytest.approx(10.0 * ratelimit.AT_LIMIT_SHARE)
    assert ctl.current(T0 + recovery_time(10.0)) == pytest.approx(10.0)
    # a little less than all we sent is a limit under our rate: settle under it
    under = RateController(max_rate=10.0)
    accept_steadily(under, rate=9.0, start=T0 - 2 * under.measure_window, end=T0)
    under.on_throttled(T0, None)
    assert under.rate == pytest.approx(9.0 * ratelimit.MEASURED_SHARE, rel=0.02)


def test_a_new_episode_after_episode_seconds_cuts_again() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, None)
    first = ctl.rate
    later = T0 + max(EPISODE_SECONDS, 2.0 / first)
    hit = ctl.current(later)
    ctl.on_throttled(later, None)
    assert ctl.episodes == 2
    assert ctl.rate == pytest.approx(hit * BLIND)
    assert ctl.rate < first


def test_retry_after_sets_hold_until_and_never_shortens_it() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, 3.0)
    assert ctl.hold_until == T0 + 3.0
    ctl.on_throttled(T0 + 1.0, 1.0)  # would end earlier: ignored
    assert ctl.hold_until == T0 + 3.0
    ctl.on_throttled(T0 + 1.5, None)
    assert ctl.hold_until == T0 + 3.0
    ctl.on_throttled(T0 + 2.0, 5.0)
    assert ctl.hold_until == T0 + 7.0
    ctl.on_throttled(T0 + 2.0, 0.0)
    assert ctl.hold_until == T0 + 7.0
    assert ctl.throttled == 5


@pytest.mark.parametrize("max_rate", [10.0, 1.0, 0.5])
def test_recovers_to_the_pre_429_rate_after_the_recovery_time(max_rate: float) -> None:
    ctl = RateController(max_rate=max_rate)
    ctl.on_throttled(T0, None)
    k = recovery_time(max_rate)
    rates = [ctl.current(T0 + k * i / 20) for i in range(21)]
    assert rates == sorted(rates)  # monotone growth
    assert rates[0] == pytest.approx(max_rate * BLIND)
    assert rates[10] < max_rate
    assert ctl.current(T0 + k) == pytest.approx(max_rate)
    assert ctl.current(T0 + k + 100.0) == max_rate


def test_probes_above_the_limit_rate_up_to_max_rate_and_never_beyond() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, None)
    second = T0 + 2.0
    top = ctl.current(second)  # the rate that hits the limit the second time
    assert top < 10.0
    ctl.on_throttled(second, None)
    k = recovery_time(top)
    assert ctl.current(second + k) == pytest.approx(top)
    # a plateau around the limit, then faster probing beyond it
    near = ctl.current(second + k + 0.5) - top
    beyond = ctl.current(second + k + 3.0) - top
    assert 0 < near < beyond
    sweep = [ctl.current(second + k + i * 0.25) for i in range(400)]
    assert sweep == sorted(sweep)
    assert max(sweep) == 10.0
    assert all(r <= 10.0 for r in sweep)
    assert ctl.current(1e9) == 10.0


def test_a_measured_limit_settles_just_under_it_then_probes_up() -> None:
    if not hasattr(RateController, "on_accepted"):
        pytest.skip("this RateController does not measure the accepted rate")
    ctl = RateController(max_rate=10.0)
    window = ctl.measure_window
    accept_steadily(ctl, rate=5.0, start=T0 - 2 * window, end=T0)  # the server let 5/s through
    assert ctl.accepted_rate(T0) == pytest.approx(5.0, rel=1 / (5.0 * window))
    ctl.on_throttled(T0, None)
    assert ctl.rate < 5.0
    assert ctl.rate == pytest.approx(5.0 * ratelimit.MEASURED_SHARE)
    k = recovery_time(5.0, measured=True)
    assert ctl.current(T0 + k / 2) < 5.0
    assert ctl.current(T0 + k) == pytest.approx(5.0)
    assert 5.0 < ctl.current(T0 + 3 * k) <= 10.0
    assert ctl.current(T0 + 1e6) == 10.0


def test_accepted_rate_needs_a_full_window_of_history() -> None:
    if not hasattr(RateController, "on_accepted"):
        pytest.skip("this RateController does not measure the accepted rate")
    ctl = RateController(max_rate=10.0)
    assert ctl.accepted_rate(T0) is None
    ctl.on_accepted(T0)
    assert ctl.accepted_rate(T0 + 0.5) is None
    for i in range(1, 8):
        ctl.on_accepted(T0 + i * 0.25)
    window = ctl.measure_window
    inside = sum(1 for i in range(8) if T0 + 2.0 - window <= T0 + i * 0.25 <= T0 + 2.0)
    assert ctl.accepted_rate(T0 + 2.0) == pytest.approx(inside / window)
    assert ctl.accepted_rate(T0 + 10.0) == 0.0


@pytest.mark.parametrize("min_rate", [None, 2.0])
def test_min_rate_floor(min_rate: float | None) -> None:
    ctl = RateController(max_rate=10.0) if min_rate is None else RateController(10.0, min_rate)
    floor = 0.1 if min_rate is None else min_rate
    now = T0
    seen = []
    for _ in range(200):
        ctl.on_throttled(now, None)
        seen.append(ctl.rate)
        now += max(EPISODE_SECONDS, 2.0 / ctl.rate)  # the next 429 starts a new episode
    assert ctl.episodes == 200
    assert min(seen) >= floor
    assert seen[-1] == pytest.approx(floor)
    assert ctl.current(now) >= floor


def test_time_going_backwards_does_not_raise_the_rate() -> None:
    ctl = RateController(max_rate=10.0)
    ctl.on_throttled(T0, None)
    assert ctl.current(T0 - 50.0) == pytest.approx(10.0 * BLIND)


# -- AdaptiveLimiter with a fake clock ----------------------------------------------------------


class FakeTime:
    """A clock and a sleep: sleeping records the request and moves the clock."""

    def __init__(self, start: float = 1000.0, *, advance: bool = True) -> None:
        self.now = start
        self.advance = advance
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[FakeTime], None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)
        await asyncio.sleep(0)


async def test_sequential_acquires_are_spaced_just_under_the_rate() -> None:
    rate = 200.0
    fake = FakeTime()
    limiter = AdaptiveLimiter(RateController(rate), clock=fake, sleep=fake.sleep)
    starts = []
    for _ in range(20):
        await limiter.acquire()
        starts.append(fake.now)
    assert limiter.acquired == 20
    assert fake.sleeps == pytest.approx([1 / (rate * PACE)] * 19)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1 / (rate * PACE)] * 19)


async def test_concurrent_acquires_reserve_consecutive_slots() -> None:
    rate = 1000.0
    fake = FakeTime(advance=False)
    limiter = AdaptiveLimiter(RateController(rate), clock=fake, sleep=fake.sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(20)))
    assert limiter.acquired == 20
    assert sorted(fake.sleeps) == pytest.approx([i / (rate * PACE) for i in range(1, 20)])


async def test_an_idle_limiter_does_not_bank_a_burst() -> None:
    fake = FakeTime()
    limiter = AdaptiveLimiter(RateController(200.0), clock=fake, sleep=fake.sleep)
    await limiter.acquire()
    fake.now += 60.0  # a long idle spell
    await limiter.acquire()
    await limiter.acquire()
    await limiter.acquire()
    assert fake.sleeps == pytest.approx([1 / (200.0 * PACE)] * 2)


async def test_spacing_widens_after_a_429() -> None:
    rate = 200.0
    fake = FakeTime()
    ctl = RateController(rate)
    limiter = AdaptiveLimiter(ctl, clock=fake, sleep=fake.sleep)
    await limiter.acquire()
    await limiter.acquire()
    limiter.throttled(None)
    assert ctl.episodes == 1
    fake.sleeps.clear()
    for _ in range(5):
        await limiter.acquire()
    cut = rate * BLIND
    # slots reserved at the old rate are dropped: every later gap follows the cut rate
    # (growing back slowly, never faster than max_rate)
    assert len(fake.sleeps) >= 4
    for gap in fake.sleeps:
        assert 1 / rate < gap <= 1 / (cut * PACE) + 1e-12
        assert gap == pytest.approx(1 / (cut * PACE), rel=0.05)


async def test_retry_after_holds_the_next_acquire() -> None:
    fake = FakeTime()
    ctl = RateController(200.0)
    limiter = AdaptiveLimiter(ctl, clock=fake, sleep=fake.sleep)
    await limiter.acquire()
    limiter.throttled(2.0)
    assert ctl.hold_until == pytest.approx(1002.0)
    await limiter.acquire()
    assert fake.now == pytest.approx(1002.0)
    assert fake.sleeps == pytest.approx([2.0])
    await limiter.acquire()  # after the hold, pacing resumes at the (cut) rate
    assert len(fake.sleeps) == 2
    assert 1 / 200.0 < fake.sleeps[-1] <= 1 / (200.0 * BLIND * PACE) + 1e-12


async def test_a_hold_extended_during_the_wait_is_honoured() -> None:
    fake = FakeTime()
    ctl = RateController(200.0)
    limiter = AdaptiveLimiter(ctl, clock=fake, sleep=fake.sleep)
    ctl.on_throttled(fake.now, 2.0)

    def extend_once(t: FakeTime) -> None:
        t.on_sleep = None
        ctl.on_throttled(t.now, 3.0)  # another 429 arrives while we wait

    fake.on_sleep = extend_once
    await limiter.acquire()
    assert fake.now >= ctl.hold_until == pytest.approx(1005.0)
    assert sum(fake.sleeps) == pytest.approx(5.0, abs=0.02)
    assert limiter.acquired == 1


async def test_the_limiter_reads_the_injected_clock_for_throttled() -> None:
    fake = FakeTime(start=5000.0)
    ctl = RateController(10.0)
    limiter = AdaptiveLimiter(ctl, clock=fake, sleep=fake.sleep)
    limiter.throttled(7.0)
    assert ctl.hold_until == 5007.0


async def test_real_time_20_acquires_at_100_per_second() -> None:
    limiter = AdaptiveLimiter(RateController(100.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(20):
        await limiter.acquire()
    elapsed = loop.time() - started
    assert 0.18 <= elapsed < 1.0
    assert limiter.acquired == 20


async def test_real_time_concurrent_acquires_respect_the_ceiling() -> None:
    limiter = AdaptiveLimiter(RateController(100.0))
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(loop.time())

    started = loop.time()
    await asyncio.gather(*(one() for _ in range(20)))
    assert times[-1] - started >= 0.18


async def test_requests_woken_late_by_a_stall_go_out_spaced_not_together() -> None:
    # The loop was blocked past the slots of four waiting requests. Sent as they wake, they
    # would go out together, and a sliding window would count them with the next second and
    # overflow: each takes a new slot instead (once), spaced at the rate again.
    rate = 200.0
    interval = 1 / (rate * PACE)
    clock = [1000.0]
    stalled = asyncio.Event()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not stalled.is_set():
            await stalled.wait()  # the loop is blocked: nobody wakes before the stall ends
        else:
            clock[0] += seconds

    limiter = AdaptiveLimiter(RateController(rate), clock=lambda: clock[0], sleep=sleep)
    await limiter.acquire()
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(4)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(sleeps) == 4  # all four wait for their slots
    clock[0] += 0.030  # the stall ends 30 ms later, past every slot
    sent: list[float] = []
    for task in tasks:
        task.add_done_callback(lambda t: sent.append(t.result()))
    stalled.set()
    await asyncio.gather(*tasks)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 4
    # (one slot of catch-up is allowed, as after any late wake-up; never the whole stall's)
    assert sum(gap < interval * 0.999 for gap in gaps) <= 1, gaps
    assert sent[-1] - sent[0] >= 2 * interval * 0.999


async def test_a_wake_up_a_little_late_keeps_its_slot() -> None:
    fake = FakeTime()
    limiter = AdaptiveLimiter(RateController(200.0), clock=fake, sleep=fake.sleep)
    await limiter.acquire()

    def jitter(t: FakeTime) -> None:
        t.now += ratelimit.LATE_WAKE / 2

    fake.on_sleep = jitter
    await limiter.acquire()
    assert len(fake.sleeps) == 1


async def test_slots_less_than_a_tick_ahead_go_without_a_timer() -> None:
    # At 5,000/s the slots are 0.2 ms apart: the ones due within the next tick go at once
    # (a tick's timer would have woken them together), later ones sleep to their slot.
    rate = 5000.0
    fake = FakeTime(advance=False)  # a busy loop: the clock does not move between acquires
    limiter = AdaptiveLimiter(RateController(rate), clock=fake, sleep=fake.sleep)
    for _ in range(4):
        await limiter.acquire()
    assert fake.sleeps == []
    for _ in range(20):
        await limiter.acquire()
    interval = 1 / (rate * PACE)
    assert fake.sleeps and all(s >= ratelimit.PACING_TICK for s in fake.sleeps)
    assert len(fake.sleeps) >= 24 - ratelimit.PACING_TICK / interval - 1


async def test_a_hold_ending_within_a_tick_is_waited_out() -> None:
    fake = FakeTime()
    ctl = RateController(200.0)
    limiter = AdaptiveLimiter(ctl, clock=fake, sleep=fake.sleep)
    ctl.on_throttled(fake.now - 2.0, 2.0 + ratelimit.PACING_TICK / 4)
    await limiter.acquire()
    assert fake.now >= ctl.hold_until
    assert fake.sleeps == pytest.approx([ratelimit.PACING_TICK / 4])
