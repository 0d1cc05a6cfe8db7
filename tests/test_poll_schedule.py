"""Tests of the poll schedule: the latency quantile estimate converges, later polls back off."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from batch_embed.poll_schedule import (
    DRAIN_AGE,
    DRAIN_GROWTH,
    GROWTH,
    MAX_DELAY,
    MIN_DELAY,
    QUANTILE,
    SCOUT_PATIENCE,
    SCOUT_SHARE,
    SCOUTS,
    STREAK,
    LatencyEstimator,
)


def simulate(
    estimator: LatencyEstimator, *, lo: float, hi: float, jobs: int, seed: int
) -> tuple[list[bool], list[float]]:
    """Poll each job once at first_delay(); return done-at-first-poll flags and estimates."""
    rng = random.Random(seed)
    done_flags, estimates = [], []
    for _ in range(jobs):
        latency = rng.uniform(lo, hi)
        age = estimator.first_delay()
        done = latency <= age
        estimator.observe_first_poll(age, done, planned=age)
        done_flags.append(done)
        estimates.append(estimator.estimate)
    return done_flags, estimates


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("start", [1.0, 0.05, 5.0, MAX_DELAY])
def test_converges_to_the_quantile_of_uniform_latency(seed: int, start: float) -> None:
    lo, hi = 0.2, 1.0
    target = lo + QUANTILE * (hi - lo)  # 0.936: the 92% quantile of uniform(0.2, 1.0)
    estimator = LatencyEstimator(estimate=start)
    done, estimates = simulate(estimator, lo=lo, hi=hi, jobs=2000, seed=seed)
    settled_done = done[1000:]
    share = sum(settled_done) / len(settled_done)
    assert 0.88 <= share <= 0.96
    assert statistics.fmean(estimates[1000:]) == pytest.approx(target, abs=0.05)
    assert statistics.median(estimates[1000:]) == pytest.approx(target, abs=0.06)
    assert estimator.observations == 2000


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_adapts_at_any_time_scale(scale: float) -> None:
    lo, hi = 0.2 * scale, 1.0 * scale
    target = lo + QUANTILE * (hi - lo)
    done, estimates = simulate(LatencyEstimator(), lo=lo, hi=hi, jobs=3000, seed=11)
    share = sum(done[1500:]) / 1500
    assert 0.88 <= share <= 0.96
    assert statistics.fmean(estimates[1500:]) == pytest.approx(target, rel=0.06)


def test_a_too_low_guess_is_corrected_within_a_few_dozen_jobs() -> None:
    # too low costs polls: every miss raises the estimate by a third early on
    estimator = LatencyEstimator(estimate=MIN_DELAY)
    simulate(estimator, lo=0.2, hi=1.0, jobs=30, seed=3)
    assert estimator.estimate > 0.5


@pytest.mark.parametrize(("start", "jobs"), [(10.0, 250), (MAX_DELAY, 400)])
def test_a_too_high_guess_comes_down_within_a_few_hundred_jobs(start: float, jobs: int) -> None:
    # too high costs only waiting (every first poll finds the job done), and the 92% quantile
    # comes down in small steps: a measured bound, so a slower schedule fails here
    estimator = LatencyEstimator(estimate=start)
    done, _ = simulate(estimator, lo=0.2, hi=1.0, jobs=jobs, seed=3)
    assert estimator.estimate < 1.5
    assert all(done[:60])


def test_the_estimate_moves_the_right_way() -> None:
    estimator = LatencyEstimator(estimate=1.0)
    estimator.observe_first_poll(1.0, done=False)
    up = estimator.estimate
    assert up > 1.0
    estimator.observe_first_poll(up, done=True)
    assert estimator.estimate < up
    # a miss moves it up far more than a hit moves it down: QUANTILE of jobs done balances them
    after_hit = estimator.estimate
    # (steps are relative to the estimate they start from)
    ratio = (up - 1.0) / 1.0 / ((up - after_hit) / up)
    assert ratio == pytest.approx(QUANTILE / (1 - QUANTILE))


@pytest.mark.parametrize("age", [0.0, -1.0, -math.inf])
def test_a_first_poll_at_no_age_teaches_nothing(age: float) -> None:
    estimator = LatencyEstimator(estimate=0.7)
    estimator.observe_first_poll(age, done=True)
    estimator.observe_first_poll(age, done=False)
    assert estimator.estimate == 0.7
    assert estimator.observations == 0


def test_the_estimate_stays_within_bounds_under_long_streaks() -> None:
    estimator = LatencyEstimator()
    for _ in range(5000):
        estimator.observe_first_poll(estimator.first_delay(), done=False)
    assert estimator.estimate == MAX_DELAY
    assert estimator.first_delay() == MAX_DELAY
    for _ in range(5000):
        estimator.observe_first_poll(estimator.first_delay(), done=True)
    assert estimator.estimate == MIN_DELAY
    assert estimator.first_delay() == MIN_DELAY


@pytest.mark.parametrize(
    ("estimate", "delay"),
    [(1.0, 1.0), (0.0, MIN_DELAY), (-3.0, MIN_DELAY), (1e9, MAX_DELAY), (math.inf, MAX_DELAY)],
)
def test_first_delay_is_clamped(estimate: float, delay: float) -> None:
    assert LatencyEstimator(estimate=estimate).first_delay() == delay


@pytest.mark.parametrize(
    ("age", "delay"),
    [
        (0.0, MIN_DELAY),
        (-5.0, MIN_DELAY),
        (0.01, MIN_DELAY),
        (1.0, GROWTH),
        (10.0, 10.0 * GROWTH),
        (MAX_DELAY / GROWTH, MAX_DELAY),
        (1000.0, MAX_DELAY),
        (math.inf, MAX_DELAY),
    ],
)
def test_next_delay_table(age: float, delay: float) -> None:
    assert LatencyEstimator().next_delay(age) == pytest.approx(delay)


def test_next_delay_grows_and_is_capped() -> None:
    ages = [0.05 * 1.3**i for i in range(60)]
    delays = [LatencyEstimator().next_delay(a) for a in ages]
    assert delays == sorted(delays)
    assert delays[-1] == MAX_DELAY
    assert all(MIN_DELAY <= d <= MAX_DELAY for d in delays)
    assert len(set(delays)) > 20  # really grows, not a constant


@pytest.mark.parametrize("latency", [1.5, 60.0, 600.0, 3600.0])
def test_a_cold_start_costs_a_handful_of_polls(latency: float) -> None:
    estimator = LatencyEstimator(estimate=0.9)
    age = estimator.first_delay()
    polls = 1
    while age < latency:
        age += estimator.next_delay(age)
        polls += 1
    # geometric growth (x1.6) to the cap, then one poll per MAX_DELAY
    assert polls <= 12 + latency / MAX_DELAY
    # the job is seen done no later than one (capped) poll interval after it finished
    assert age - latency <= max(MAX_DELAY, latency * GROWTH)
    if latency == 60.0:
        assert polls <= 10  # "a cold start of a minute costs a handful of polls, not sixty"


def test_while_draining_a_job_a_little_late_is_polled_again_soon() -> None:
    estimator = LatencyEstimator(estimate=0.9)
    age = 0.95  # just past the estimate: among the few percent not done at the first poll
    assert estimator.next_delay(age) == pytest.approx(age * GROWTH)
    assert estimator.next_delay(age, draining=True) == pytest.approx(age * DRAIN_GROWTH)
    assert estimator.next_delay(age, draining=True) < estimator.next_delay(age) / 5


@pytest.mark.parametrize("latency", [60.0, 600.0])
def test_while_draining_a_cold_start_still_backs_off(latency: float) -> None:
    estimator = LatencyEstimator(estimate=0.9)
    age = estimator.first_delay()
    polls = 1
    while age < latency:
        age += estimator.next_delay(age, draining=True)
        polls += 1
    # fast re-polls stop at DRAIN_AGE estimates: a few more polls than usual, not hundreds
    assert polls <= 12 + latency / MAX_DELAY + math.log(DRAIN_AGE) / math.log(1 + DRAIN_GROWTH)


@pytest.mark.parametrize("true_latency", [0.005, 0.02])
def test_a_fast_service_is_found_within_a_few_rounds(true_latency: float) -> None:
    # Jobs done almost at once: first polls planned in rounds of 500 (the jobs submitted
    # while the previous round waited), all finding their job done on time.
    estimator = LatencyEstimator()
    rounds = 0
    while estimator.estimate > max(MIN_DELAY, true_latency) * 1.5 and rounds < 50:
        plans = [estimator.first_delay() for _ in range(500)]
        for plan in plans:
            estimator.observe_first_poll(plan, done=True, planned=plan)
        rounds += 1
    assert rounds <= 8


def test_scouts_that_find_a_job_running_leave_the_estimate_alone() -> None:
    # Latency 0.2-1.0 s with the estimate just above its maximum: every job is done, a
    # streak comes quickly, and the scouts at half the estimate find most jobs running.
    estimator = LatencyEstimator(estimate=1.05)
    rng = random.Random(7)
    early_polls = 0
    for _ in range(3000):
        plan = estimator.first_delay()
        done = rng.uniform(0.2, 1.0) <= plan
        early_polls += plan < 0.8
        estimator.observe_first_poll(plan, done, planned=plan)
    assert estimator.estimate > 0.8
    assert early_polls < 0.01 * 3000  # scouting costs under 1% of first polls


def test_scouts_never_answered_are_given_up() -> None:
    estimator = LatencyEstimator(estimate=0.8)
    for _ in range(STREAK):
        estimator.observe_first_poll(0.8, done=True, planned=0.8)
    scouts = [estimator.first_delay() for _ in range(SCOUTS)]
    assert scouts == pytest.approx([0.8 * SCOUT_SHARE] * SCOUTS, rel=0.2)
    for _ in range(SCOUT_PATIENCE + 1):  # their jobs failed: no answer ever comes
        estimator.observe_first_poll(0.85, done=False, planned=0.85)
    for _ in range(STREAK):  # scouting can start again
        plan = estimator.first_delay()
        estimator.observe_first_poll(plan, done=True, planned=plan)
    assert estimator.first_delay() == pytest.approx(estimator.estimate * SCOUT_SHARE, rel=0.05)


def test_a_streak_of_early_finishers_from_the_right_estimate_is_rare() -> None:
    # From the right estimate, 64 done in a row happens about once in 200 windows: the
    # estimate stays close to the quantile over a long run.
    estimator = LatencyEstimator(estimate=0.936)
    done, estimates = simulate(estimator, lo=0.2, hi=1.0, jobs=20000, seed=5)
    assert sum(done) / len(done) == pytest.approx(QUANTILE, abs=0.03)
    assert statistics.fmean(estimates) == pytest.approx(0.936, abs=0.05)


def test_first_polls_delayed_by_the_read_limit_never_cut_the_estimate() -> None:
    # Polls the read limit held back find their job done whatever the estimate: however
    # many in a row, they are no evidence that it is too high.
    estimator = LatencyEstimator(estimate=0.9)
    for _ in range(10 * STREAK):
        estimator.observe_first_poll(0.9 * 1.5, done=True, planned=0.9)
    assert estimator.estimate == 0.9


def test_a_burst_planned_before_a_cut_cuts_once() -> None:
    estimator = LatencyEstimator(estimate=0.8)
    for _ in range(5 * STREAK):  # planned at 0.8, all done on time: one streak...
        estimator.observe_first_poll(0.8, done=True, planned=0.8)
    scouts = [estimator.first_delay() for _ in range(SCOUTS)]
    for plan in scouts:  # ...whose scouts find their jobs done: one cut
        estimator.observe_first_poll(plan, done=True, planned=plan)
    once = estimator.estimate
    assert once == pytest.approx(scouts[0])
    assert 0.8 * SCOUT_SHARE * 0.7 < once <= 0.8 * SCOUT_SHARE
