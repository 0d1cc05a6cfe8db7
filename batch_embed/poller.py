"""Stage 3: one scheduler polls every in-flight job, within the API's 1-hour retention.

A single heap orders all jobs by the time of their next poll; a bounded number of polls run
at once, each under the read rate limiter (status polls and result fetches share that
budget). The first poll of a job goes out when the learned latency says it is likely done
(:mod:`batch_embed.poll_schedule`), later ones after growing intervals (shorter ones while
the submit budget is idle: ``draining``). The result is fetched as soon as a status says
COMPLETED. A job whose submission nears the end of its retention is given up and submitted
again (counted) before its 404; a 404 inside the hour is retried a few times, then the text
is submitted again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable

from . import errors
from .client import SegmindClient
from .jobs import EngineEvents, Job, Resubmit
from .poll_schedule import LatencyEstimator
from .ratelimit import AdaptiveLimiter
from .records import ErrorKind, JobState
from .retry import RetryPolicy, Verdict, classify
from .stats import RunStats

NOT_FOUND_RETRIES = 3
"""404s in a row, inside the job's hour, before the text is submitted again."""


class Poller:
    """The one scheduler for all in-flight request_ids; see the module doc."""

    def __init__(
        self,
        *,
        client: SegmindClient,
        limiter: AdaptiveLimiter,
        policy: RetryPolicy,
        events: EngineEvents,
        stats: RunStats,
        concurrency: int,
        retention: float = 3600.0,
        retention_margin: float = 300.0,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self._client = client
        self._draining = draining
        self._limiter = limiter
        self._policy = policy
        self._events = events
        self._stats = stats
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._rand = rand
        self._retention = retention
        self._margin = retention_margin
        self._heap: list[tuple[float, int, Job, bool]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.latency = LatencyEstimator()
        self.stopped = False

    @property
    def tracked(self) -> int:
        """Jobs waiting for their next poll or being polled."""
        return len(self._heap) + len(self._tasks)

    def add(self, job: Job) -> None:
        """Track a job that was just submitted (or re-attached): first poll at the learned time."""
        assert job.handle is not None
        age = max(0.0, self._wall() - job.handle.submitted_at)
        job.first_poll_plan = self.latency.first_delay()
        delay = max(0.0, job.first_poll_plan - age)
        # Never let the first poll fall after the job's retention: it would only find a 404.
        self._schedule(job, max(0.0, min(delay, self._remaining(job))), fetch=False)

    def _schedule(self, job: Job, delay: float, *, fetch: bool) -> None:
        heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), job, fetch))
        self._wake.set()

    async def run(self) -> None:
        """Dispatch due polls until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._heap:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                due = self._heap[0][0]
                now = self._clock()
                if due > now:
                    self._wake.clear()
                    timer = loop.call_later(due - now, self._wake.set)
                    await self._wake.wait()  # the timer, or a job added meanwhile
                    timer.cancel()
                    continue
                await self._slots.acquire()
                _, _, job, fetch = heapq.heappop(self._heap)
                task = asyncio.create_task(self._visit(job, fetch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _visit(self, job: Job, fetch: bool) -> None:
        try:
            if fetch:
                await self._fetch(job)
            else:
                await self._poll(job)
        finally:
            self._slots.release()

    def _remaining(self, job: Job) -> float:
        """Seconds until the job's retention (minus the margin) runs out; <= 0 when it has."""
        assert job.handle is not None
        return self._retention - self._margin - (self._wall() - job.handle.submitted_at)

    async def _poll(self, job: Job) -> None:
        assert job.handle is not None
        sent_at = await self._limiter.acquire()
        age = self._wall() - job.handle.submitted_at
        self._stats.polls += 1
        job.polls += 1
        try:
            status = await self._client.status(job.handle)
        except errors.ApiError as err:
            self._after_failure(job, err, sent_at, fetch=False)
            return
        self._limiter.accepted(sent_at)
        job.attempts = 0
        job.not_found = 0
        if job.polls == 1:
            self.latency.observe_first_poll(age, status.state.terminal, planned=job.first_poll_plan)
        if status.state is JobState.COMPLETED:
            await self._fetch(job)
        elif status.state is JobState.FAILED:
            self._events.failed(
                job, ErrorKind.FAILED, status.error or "job FAILED (no reason given)", 422
            )
        else:
            delay = self.latency.next_delay(age, draining=self._draining())
            self._reschedule_or_expire(job, delay, fetch=False)

    async def _fetch(self, job: Job) -> None:
        assert job.handle is not None
        sent_at = await self._limiter.acquire()
        self._stats.result_fetches += 1
        try:
            vector = await self._client.result(job.handle)
        except errors.ApiError as err:
            self._after_failure(job, err, sent_at, fetch=True)
            return
        self._limiter.accepted(sent_at)
        await self._events.vector(job, vector)

    def _after_failure(
        self, job: Job, err: errors.ApiError, sent_at: float, *, fetch: bool
    ) -> None:
        """One decision for every failed read: reschedule, resubmit, fail the row, or abort."""
        verdict = classify(err, reading=True)
        if verdict is Verdict.THROTTLED:
            self._stats.throttled_reads += 1
            self._limiter.throttled(err.retry_after, sent_at)
            delay = err.retry_after
            if delay is None:
                delay = self._policy.backoff(1, self._rand)
            self._reschedule_or_expire(job, delay, fetch=fetch)
        elif verdict is Verdict.ABORT:
            self._events.abort(err)
            self._events.failed(job, ErrorKind.ABORTED, f"run aborted: {err}", err.status)
        elif isinstance(err, errors.JobFailed):
            self._events.failed(job, ErrorKind.FAILED, err.detail or str(err), 422)
        elif isinstance(err, errors.BadVector) or verdict is Verdict.ROW_ERROR:
            self._events.failed(job, ErrorKind.BAD_OUTPUT, str(err), err.status)
        elif isinstance(err, errors.NotFound):
            job.not_found += 1
            assert job.handle is not None
            if self._remaining(job) <= 0.0:
                self._events.resubmit(job, Resubmit.EXPIRED)
            elif job.not_found > NOT_FOUND_RETRIES:
                self._events.resubmit(job, Resubmit.NOT_FOUND)
            else:
                self._stats.retries += 1
                delay = self._policy.backoff(job.not_found, self._rand)
                self._reschedule_or_expire(job, delay, fetch=fetch)
        else:
            job.attempts += 1
            # Reads are free to repeat: bound them by count, and keep the clock of the
            # current trouble, not of the job's whole life.
            if job.attempts == 1:
                job.step_started = self._clock()
            elapsed = self._clock() - job.step_started
            if self._policy.should_retry(attempt=job.attempts, elapsed=elapsed):
                self._stats.retries += 1
                delay = self._policy.backoff(job.attempts, self._rand)
                self._reschedule_or_expire(job, delay, fetch=fetch)
            else:
                self._events.failed(
                    job,
                    ErrorKind.RETRIES_EXHAUSTED,
                    f"{'result' if fetch else 'status'} failed {job.attempts} times; last: {err}",
                    err.status,
                )

    def _reschedule_or_expire(self, job: Job, delay: float, *, fetch: bool) -> None:
        """Try again after ``delay``, or last at the end of the job's retention; past it,
        submit the text again (counted)."""
        remaining = self._remaining(job)
        if remaining <= 0.0:
            self._events.resubmit(job, Resubmit.EXPIRED)
        else:
            self._schedule(job, min(delay, remaining), fetch=fetch)
