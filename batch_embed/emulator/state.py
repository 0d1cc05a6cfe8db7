"""The emulator's mutable state: config, clock, random streams, limits, jobs, credits, stats.

One :class:`EmulatorState` lives in each app. Two seeded random streams keep runs
reproducible: ``fault_rng`` draws per-request faults (slow, drop, 5xx, lost submit, 429
header choices) and ``job_rng`` draws per-job facts (latency, cold start, random failure,
request id); with the same seed and the same request sequence, the same things happen.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .config import EmulatorConfig, config_with_changes
from .jobs import QUEUE_FRACTION, Job, JobStore
from .limits import SlidingWindow
from .markers import BLOCKED_ERROR, Markers
from .stats import Stats

Clock = Callable[[], float]

LIMIT_CLASSES_BY_ENDPOINT: dict[str, tuple[str, ...]] = {
    "submit": ("submit", "shared"),
    "sync": ("submit", "shared"),
    "status": ("read", "shared"),
    "result": ("read", "shared"),
    "poll": ("read", "shared"),
    "credits": ("shared",),
}
"""Which limits each API endpoint counts against (every class named must have room)."""

_CREDIT_DIGITS = 9


class EmulatorState:
    """Everything the handlers share; the config is replaced whole, never mutated."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.clock = clock
        self.config = config
        self.store = JobStore()
        self.stats = Stats()
        self.limiters: dict[str, SlidingWindow] = {}
        self.fault_rng = random.Random()
        self.job_rng = random.Random()
        self.balance: float | None = config.credits
        self.free_balance = config.free_credits
        self.credits_spent = 0.0
        self._apply(config, changed=None)

    def update(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Apply switch changes at runtime (validated); return the new config.

        Changing a limit restarts its window; changing ``seed`` reseeds both random
        streams; giving ``credits`` or ``free_credits`` sets that balance.
        """
        new = config_with_changes(self.config, changes)
        self._apply(new, changed=set(changes))
        return new

    def _apply(self, config: EmulatorConfig, changed: set[str] | None) -> None:
        self.config = config
        for name in ("submit", "read", "shared"):
            spec: str | None = getattr(config, f"{name}_limit")
            current = self.limiters.get(name)
            if spec is None:
                self.limiters.pop(name, None)
            elif current is None or current.spec != spec or changed is None:
                self.limiters[name] = SlidingWindow(spec)
        if changed is None or "seed" in changed:
            seed = config.seed
            self.fault_rng = random.Random(None if seed is None else f"{seed}:faults")
            self.job_rng = random.Random(None if seed is None else f"{seed}:jobs")
        if changed is not None and "credits" in changed:
            self.balance = config.credits
        if changed is not None and "free_credits" in changed:
            self.free_balance = config.free_credits

    def limit_wait(self, endpoint: str, now: float) -> tuple[str, float] | None:
        """The first full limit class for ``endpoint`` and its wait, or None (then counted)."""
        classes = LIMIT_CLASSES_BY_ENDPOINT.get(endpoint, ())
        limiters = self.limiters
        if not limiters:
            return None
        for name in classes:
            limiter = limiters.get(name)
            if limiter is not None:
                wait = limiter.wait(now)
                if wait > 0:
                    return name, wait
        for name in classes:
            limiter = limiters.get(name)
            if limiter is not None:
                limiter.record(now)
        return None

    def can_afford(self) -> bool:
        """Whether the balances cover one more paid call."""
        if self.balance is None:
            return True
        return round(self.balance + self.free_balance, _CREDIT_DIGITS) >= self.config.price

    def bill(self, slug: str, digest: bytes) -> None:
        """Charge one paid call of ``slug`` for the text with ``digest`` (free credits first)."""
        price = self.config.price
        from_free = min(price, self.free_balance)
        self.free_balance = round(self.free_balance - from_free, _CREDIT_DIGITS)
        if self.balance is not None:
            self.balance = max(0.0, round(self.balance - (price - from_free), _CREDIT_DIGITS))
        self.credits_spent = round(self.credits_spent + price, _CREDIT_DIGITS)
        self.stats.billed_text(slug, digest)

    def new_request_id(self) -> str:
        """A UUID4 request id (drawn from ``job_rng``, so reproducible with a seed)."""
        if self.config.seed is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self.job_rng.getrandbits(128), version=4))

    def new_job(
        self,
        *,
        slug: str,
        dim: int,
        text: str,
        digest: bytes,
        markers: Markers,
        cut: int | None = None,
    ) -> Job:
        """Draw a job's latency and fate and store it (not billed here)."""
        config = self.config
        now = self.clock()
        cold, latency = self._draw_latency(markers)
        error: str | None = None
        if markers.blocked:
            error = BLOCKED_ERROR
        elif config.fail_rate and self.job_rng.random() < config.fail_rate:
            error = BLOCKED_ERROR
            self.stats.faults["fail"] += 1
        job = Job(
            request_id=self.new_request_id(),
            slug=slug,
            dim=dim,
            cut=cut,
            text=text,
            digest=digest,
            submitted=now,
            started=now + cold + latency * QUEUE_FRACTION,
            finished=now + cold + latency,
            error=error,
            bad_output=markers.bad_output,
        )
        self.store.add(job, now, config.retention)
        self.stats.jobs_created += 1
        return job

    def draw_sync_latency(self, markers: Markers) -> float:
        """Seconds a v1 sync call takes (same distribution as a job, cold starts included)."""
        cold, latency = self._draw_latency(markers)
        return cold + latency

    def _draw_latency(self, markers: Markers) -> tuple[float, float]:
        """``(cold_start, latency)`` of one job: a ``[[slow:S]]`` marker fixes it to (0, S)."""
        if markers.slow is not None:
            return 0.0, markers.slow
        config = self.config
        rng = self.job_rng
        lo, hi = config.latency
        latency = rng.uniform(lo, hi) if hi > lo else lo
        cold = 0.0
        if config.cold_start_rate and rng.random() < config.cold_start_rate:
            cold = rng.uniform(*config.cold_start)
            self.stats.faults["cold_start"] += 1
        return cold, latency

    def reset_stats(self) -> None:
        """Zero the counters (jobs, credits and limit windows are kept)."""
        self.stats = Stats()
        self.store.reset_peak(self.clock())

    def snapshot(self) -> dict[str, Any]:
        """Every counter, as served at ``GET /_emulator/stats``."""
        now = self.clock()
        snapshot = self.stats.snapshot()
        snapshot.update(
            unfinished_jobs=self.store.unfinished(now),
            peak_unfinished_jobs=self.store.peak_unfinished,
            stored_jobs=len(self.store),
            credits_spent=self.credits_spent,
            credits_remaining=self.balance,
            free_credits_remaining=self.free_balance,
        )
        return snapshot
