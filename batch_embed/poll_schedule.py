"""When to poll a job: learn the latency from completed jobs, poll once around completion.

Polls are paid for in read budget, so the first poll of a job goes out when it is likely
done: at the learned ``QUANTILE`` of the job latency, not at a fixed interval. Only the
first poll of each job is an unbiased probe (later ones are conditioned on "not done
yet"), so only it updates the estimate, by stochastic approximation of the quantile
(Robbins-Monro): ``estimate += step * (QUANTILE - done)``, with a step proportional to the
estimate itself, so it adapts at any time scale; a probe far from the current estimate
moves it only in the direction it is evidence for. A job not done at its first poll is polled
again after a growing interval (``GROWTH`` times its age so far, capped), so a cold start
of a minute costs a handful of polls, not sixty.

Two corrections to that. A quantile this high moves down in small steps, and a burst of
first polls sent at a stale estimate counts only once; so a fast service would take
hundreds of rounds of polls to find. When ``STREAK`` first polls in a row, each sent on
time for its plan, all find their job done, the estimate may be far too high (or only just
above the latency's maximum, where every job is done): the next ``SCOUTS`` jobs are polled
first at ``SCOUT_SHARE`` of it, and if every one of them is done too, the estimate is cut to
that. A wrong guess costs a few early polls, a right one finds a fast service in a few
rounds. And while the submit budget is idle (nothing waits to be submitted, as at the end
of a run) a job only a little late is polled again sooner (``DRAIN_GROWTH``): the run's end
waits on it and the budget would go unused; a cold start still backs off as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QUANTILE = 0.92
"""Share of jobs that should be done at their first poll."""
LEARNING_RATE = 0.08
"""Size of one estimate step, relative to the estimate."""
GROWTH = 0.6
"""A later poll waits this share of the job's age so far."""
PROBE_TOLERANCE = 0.1
"""How far from the estimate a probe may be and still count (read limits delay polls)."""
STREAK = 96
"""First polls in a row, all done, after which scouts test whether the estimate is far too
high."""
STREAK_TOLERANCE = PROBE_TOLERANCE
"""How late for its plan a first poll may be and still count towards a streak: a poll the
read limit delayed finds its job done whatever the estimate, and says nothing about it."""
SCOUTS = 5
"""Jobs polled first early after a streak; all of them done cuts the estimate."""
SCOUT_SHARE = 0.5
"""Scouts are polled at this share of the estimate, and the estimate is cut to it."""
SCOUT_PATIENCE = 4 * STREAK
"""Other first polls after which scouts that never answered are given up."""
DRAIN_GROWTH = 0.1
"""While the submit budget is idle, a job not done is polled again after this share of its
age..."""
DRAIN_AGE = 2.0
"""... as long as it is younger than this many estimates (later, it is a cold start)."""
MIN_DELAY = 0.05
MAX_DELAY = 30.0


@dataclass(slots=True)
class LatencyEstimator:
    """The learned age (seconds since submit) by which QUANTILE of jobs are done."""

    estimate: float = 0.5
    observations: int = field(default=0, init=False)
    streak: int = field(default=0, init=False)
    """First polls in a row, each on time for its plan, that found the job done."""
    _scouts_to_send: int = field(default=0, init=False)
    _scout_plan: float = field(default=0.0, init=False)
    _scouts_done: int = field(default=0, init=False)
    _scout_wait: int = field(default=0, init=False)

    def first_delay(self) -> float:
        """Seconds after submit to send a job's first poll (the job's plan)."""
        delay = min(MAX_DELAY, max(MIN_DELAY, self.estimate))
        if self._scouts_to_send:
            self._scouts_to_send -= 1
            return self._scout_plan
        return delay

    def observe_first_poll(self, age: float, done: bool, planned: float | None = None) -> None:
        """Learn from a first poll sent ``age`` seconds after submit that found ``done``;
        ``planned`` is the age it was meant to go at (:meth:`first_delay`; default: the
        estimate now)."""
        if age <= 0:
            return
        plan = self.estimate if planned is None else planned
        if self._scout_plan and plan <= self._scout_plan:
            self._observe_scout(age, done, plan)
            return
        if self._scout_plan:
            self._scout_wait += 1
            if self._scout_wait > SCOUT_PATIENCE:  # a scout's job failed or was lost
                self._scout_plan, self._scouts_to_send = 0.0, 0
        if not done:
            self.streak = 0
        elif age <= plan * (1.0 + STREAK_TOLERANCE):
            self.streak += 1
            if self.streak >= STREAK and not self._scout_plan:
                self.streak = 0
                self._scout_plan = max(MIN_DELAY, self.estimate * SCOUT_SHARE)
                self._scouts_to_send, self._scouts_done, self._scout_wait = SCOUTS, 0, 0
        # A probe only moves the estimate in the direction it is evidence for: "not done"
        # at an age below the estimate, or "done" above it, says nothing we do not already
        # believe. Without this, a burst of first polls sent together at a stale estimate
        # would each push it the same way, compounding (e.g. to MAX_DELAY in one burst).
        if done and age > self.estimate * (1.0 + PROBE_TOLERANCE):
            return
        if not done and age < self.estimate * (1.0 - PROBE_TOLERANCE):
            return
        self.observations += 1
        # Early on, move faster. A guess that is too low is corrected within a few jobs (each
        # miss is a full step up, and costs a poll); one too high comes down by ~3% a job (a
        # quantile this high moves down in small steps), or by scouts.
        rate = LEARNING_RATE * (4.0 if self.observations < 20 else 1.0)
        target = QUANTILE - (1.0 if done else 0.0)
        base = max(self.estimate, MIN_DELAY)
        self.estimate = min(MAX_DELAY, max(MIN_DELAY, base + rate * base * target / QUANTILE))

    def _observe_scout(self, age: float, done: bool, plan: float) -> None:
        """A scout's answer: one not done (or polled late) ends the scouting; all done cut
        the estimate to the scouts' plan."""
        self.observations += 1
        if not done or age > plan * (1.0 + STREAK_TOLERANCE):
            self._scout_plan, self._scouts_to_send = 0.0, 0
            return
        self._scouts_done += 1
        if self._scouts_done >= SCOUTS:
            self.estimate = min(self.estimate, self._scout_plan)
            self._scout_plan, self._scouts_to_send = 0.0, 0

    def next_delay(self, age: float, *, draining: bool = False) -> float:
        """Seconds to wait before polling again a job still running at ``age``; ``draining``
        when the submit budget is idle."""
        growth = DRAIN_GROWTH if draining and age < DRAIN_AGE * self.estimate else GROWTH
        return min(MAX_DELAY, max(MIN_DELAY, age * growth))
