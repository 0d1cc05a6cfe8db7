"""The pure slot granting behind the Ray budget actor (batch_embed.ray.slots), on exact times."""

from __future__ import annotations

import math

import pytest

from batch_embed.ratelimit import PACE_SHARE, RateController
from batch_embed.ray.slots import (
    HEADROOM,
    LEASE_SECONDS,
    MAX_GRANT,
    SHARED_FULL_PACE,
    SlotBook,
    class_stats,
    shared_controller,
)

RATE = 20.0
INTERVAL = 1.0 / (RATE * PACE_SHARE)


def book(rate: float = RATE) -> SlotBook:
    return SlotBook(RateController(rate))


def test_a_grant_holds_the_slots_of_one_lease_spaced_at_the_rate() -> None:
    slots = book()
    grant = slots.grant(100, now=10.0)
    assert grant.times[0] == 10.0
    assert len(grant.times) == math.floor(LEASE_SECONDS / INTERVAL) + 1
    gaps = [b - a for a, b in zip(grant.times, grant.times[1:], strict=False)]
    assert all(gap == pytest.approx(INTERVAL) for gap in gaps)
    assert slots.granted == len(grant.times)


def test_a_grant_never_holds_more_than_asked_or_max_grant() -> None:
    assert len(book().grant(2, now=0.0).times) == 2
    assert len(book(rate=100_000.0).grant(1000, now=0.0).times) == MAX_GRANT


def test_workers_asking_at_once_get_disjoint_slots_then_an_empty_grant() -> None:
    slots = book()
    first = slots.grant(100, now=0.0)
    second = slots.grant(100, now=0.0)
    # The lease is spent by the first: the second gets nothing, and when to ask again.
    assert second.times == ()
    assert second.retry_at == pytest.approx(first.times[-1] + INTERVAL - LEASE_SECONDS)
    third = slots.grant(100, now=second.retry_at)
    assert third.times[0] == pytest.approx(first.times[-1] + INTERVAL)


def test_asking_a_little_late_keeps_the_schedule_but_idleness_banks_no_burst() -> None:
    slots = book()
    first = slots.grant(1, now=0.0)
    late = slots.grant(1, now=first.times[0] + INTERVAL * 1.5)
    assert late.times[0] == pytest.approx(INTERVAL)  # one slot behind: kept
    idle = slots.grant(100, now=50.0)
    assert idle.times[0] == 50.0
    assert len(idle.times) == math.floor(LEASE_SECONDS / INTERVAL) + 1


def test_a_429_cuts_the_next_grants_rate_and_a_retry_after_holds_them() -> None:
    slots = book()
    slots.grant(3, now=0.0)
    episode = slots.throttled(0.5, retry_after=2.0, sent_at=0.4)
    assert episode == 1
    grant = slots.grant(5, now=0.5)
    assert grant.times == ()
    assert grant.retry_at == pytest.approx(2.5 - LEASE_SECONDS)
    after = slots.grant(5, now=2.5)
    assert after.times[0] == pytest.approx(2.5)
    assert after.episode == 1
    assert after.times[1] - after.times[0] > INTERVAL  # spaced at the cut rate


def test_a_shared_429_at_the_limit_steps_back_a_little_though_a_window_counts_short() -> None:
    controller = shared_controller(RATE)
    assert controller.max_rate == pytest.approx(RATE * HEADROOM)
    assert controller.full_pace == SHARED_FULL_PACE
    slots = SlotBook(controller)
    paced = 1.0 / (controller.max_rate * PACE_SHARE)
    sends = [i * paced for i in range(60)]
    # Every send accepted; the window before the throttled one counts 19 of its 19.8.
    slots.accepted(sends[:-1])
    slots.throttled(sends[-1] + 0.05, retry_after=None, sent_at=sends[-1])
    cut = controller.current(sends[-1] + 0.05)
    assert cut == pytest.approx(controller.max_rate * 0.99)
    # The same evidence judged as one process judges its own exact pacing: a lower limit.
    alone = SlotBook(RateController(RATE * HEADROOM))
    alone.accepted(sends[:-1])
    alone.throttled(sends[-1] + 0.05, retry_after=None, sent_at=sends[-1])
    assert alone.controller.current(sends[-1] + 0.05) < cut


def test_class_stats_report_the_books_figures() -> None:
    slots = book()
    slots.grant(4, now=0.0)
    slots.throttled(1.0, retry_after=None, sent_at=0.9)
    stats = class_stats(slots, now=1.0)
    assert (stats.granted, stats.throttled, stats.episodes) == (4, 1, 1)
    assert stats.max_rate == RATE
    assert stats.rate < RATE


@pytest.mark.parametrize("lease", [0.0, -1.0, math.inf, math.nan])
def test_the_lease_must_be_a_finite_positive_time(lease: float) -> None:
    with pytest.raises(ValueError, match="lease"):
        SlotBook(RateController(RATE), lease=lease)
