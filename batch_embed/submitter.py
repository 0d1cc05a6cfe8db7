"""Stage 2: a bounded pool of coroutines submits v2 jobs under the submit rate limiter.

Each submit is written to the journal as an intent *before* the POST (the intents of one
loop iteration in one transaction: :class:`IntentWriter`) and its request_id within
SUBMITTED_FLUSH_SECONDS of its answer (with the next intent's commit, usually), so a
crash never loses a paid job: at worst a text whose request_id was not yet written is
submitted again, counted as possibly billed twice. A 429 slows the whole
submit class (:mod:`batch_embed.ratelimit`) and is retried, never an error by itself; 5xx,
timeouts and dropped connections are retried within the :class:`RetryPolicy`'s bounds, and
when the request may have reached the server the text is counted as possibly billed twice.

Before each POST the run's spending rules are asked (:mod:`batch_embed.spending`): a text
submitted as often as its allowance permits fails as ``lost``; at the run's submit cap the
job is left for the next run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from . import errors
from .client import SegmindClient
from .jobs import EngineEvents, Job
from .journal import Journal
from .ratelimit import AdaptiveLimiter
from .records import ErrorKind
from .retry import RetryPolicy, Verdict, classify
from .spending import ResubmitAllowance, SubmitBudget
from .stats import RunStats

SUBMITTED_FLUSH_SECONDS = 0.05
"""A request_id waits at most this long for the next intent's commit before it is written."""


def answered_unusably(error: errors.ApiError) -> bool:
    """True when the service accepted a submit (2xx, or a status not read) but its answer
    cannot be used (no request_id, not JSON, too large): a job was created and billed, and
    we will never know it. Submitting again pays again, so the resubmit allowance counts it
    as a lost job."""
    return isinstance(error, errors.MalformedResponse) and (
        error.status is None or 200 <= error.status < 300
    )


def may_have_reached_server(error: errors.ApiError) -> bool:
    """True when a failed submit may still have created (and billed) a job."""
    if isinstance(error, errors.ConnectionDropped):
        return error.maybe_sent
    return isinstance(error, errors.RequestTimeout | errors.ServerError | errors.MalformedResponse)


class IntentWriter:
    """Writes the intents of the submits released in one loop iteration (the rate limiter
    wakes all requests due in one tick together) in one journal transaction.

    ``record`` returns once its intent is durable, so the POST still follows it; at
    thousands of submits a second this saves most of a commit per submit.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._digests: list[str] = []
        self._waiters: list[asyncio.Future[None]] = []

    async def record(self, digest: str) -> None:
        loop = asyncio.get_running_loop()
        if not self._digests:
            loop.call_soon(self._write)
        self._digests.append(digest)
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelled while waiting, its future is cancelled and the write leaves it out;
            # cancelled after the write, the intent is taken back: no POST will follow.
            if not waiter.cancelled() and waiter.exception() is None:
                self._journal.record_not_sent(digest)
            raise

    def _write(self) -> None:
        group = [(d, w) for d, w in zip(self._digests, self._waiters, strict=True) if not w.done()]
        self._digests, self._waiters = [], []
        if not group:  # every submit of the group was cancelled
            return
        waiters = [w for _, w in group]
        try:
            self._journal.record_intent([d for d, _ in group])
        except Exception as err:  # every submit of the group fails as its own write would
            for waiter in waiters:
                waiter.set_exception(err)
            return
        for waiter in waiters:
            waiter.set_result(None)


class Submitter:
    """Submits queued jobs with ``workers`` coroutines; see the module doc."""

    def __init__(
        self,
        *,
        client: SegmindClient,
        limiter: AdaptiveLimiter,
        journal: Journal,
        policy: RetryPolicy,
        events: EngineEvents,
        stats: RunStats,
        workers: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        halted: Callable[[], bool] = lambda: False,
        budget: SubmitBudget | None = None,
        allowance: ResubmitAllowance | None = None,
    ) -> None:
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._halted = halted
        self._client = client
        self._limiter = limiter
        self._journal = journal
        self._policy = policy
        self._events = events
        self._stats = stats
        self._workers = workers
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._stopped = False
        self._failed: asyncio.Future[None] | None = None
        self._busy = 0
        self._intents = IntentWriter(journal)
        self._budget = budget or SubmitBudget(None)
        self._allowance = allowance or ResubmitAllowance()

    @property
    def idle(self) -> bool:
        """True when no job waits to be submitted or is being submitted: the submit budget
        goes unused (as at the end of a run)."""
        return self._busy == 0 and self.queue.empty()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or ``halted()`` says so (a signal, an abort):
        checked right before every POST, so nothing is sent after a stop is known."""
        return self._stopped or self._halted()

    async def run(self) -> None:
        """Run the worker pool until cancelled, or until a delayed journal write fails."""
        self._failed = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as group:
            for _ in range(self._workers):
                group.create_task(self._worker())
            group.create_task(self._raise_failure())

    async def _raise_failure(self) -> None:
        assert self._failed is not None
        await self._failed

    def _flush(self) -> None:
        """Write the buffered request_ids; a failure (a full disk) ends the pool and the run."""
        try:
            self._journal.flush()
        except Exception as err:
            if self._failed is None:  # no pool (a direct call of submit): nobody to tell
                raise
            if not self._failed.done():
                self._failed.set_exception(err)

    def stop(self) -> None:
        """Submit nothing more; queued jobs are left for the pipeline to account for."""
        self._stopped = True

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            self._busy += 1
            try:
                if self.stopped:
                    self._events.failed(job, ErrorKind.ABORTED, "run stopped before submit", None)
                else:
                    await self.submit(job)
            finally:
                self._busy -= 1
                self.queue.task_done()

    async def submit(self, job: Job) -> None:
        """Submit one job until it has a handle, fails, or the run stops."""
        job.attempts = 0
        job.step_started = self._clock()
        throttled_since: float | None = None
        # The allowance counts submit rounds (a first one, then each resubmit after a job was
        # lost); the attempts within one round are the retry policy's to bound.
        if self._allowance.exhausted(job.prior_paid + job.submits):
            self._events.failed(job, ErrorKind.LOST, self._lost_message(job), None)
            return
        while True:
            if self.stopped:
                self._events.failed(job, ErrorKind.ABORTED, "run stopped before submit", None)
                return
            if not self._budget.take():
                self._events.left(job)
                return
            sent_at = await self._limiter.acquire()
            if self.stopped:
                self._budget.give_back()
                self._events.failed(job, ErrorKind.ABORTED, "run stopped before submit", None)
                return
            await self._intents.record(job.digest)
            if self.stopped:  # a stop came while the intent was written: nothing was sent
                self._journal.record_not_sent(job.digest)
                self._budget.give_back()
                self._events.failed(job, ErrorKind.ABORTED, "run stopped before submit", None)
                return
            job.submits += 1
            self._stats.submits += 1
            try:
                handle = await self._client.submit(job.text)
            except errors.ApiError as err:
                delay = self._after_failure(job, err, sent_at)
                if delay is None:
                    return
                if isinstance(err, errors.RateLimited):
                    now = self._clock()
                    throttled_since = throttled_since if throttled_since is not None else now
                    if now - throttled_since > self._policy.max_throttled:
                        self._events.failed(
                            job, ErrorKind.RETRIES_EXHAUSTED, f"throttled for too long: {err}", 429
                        )
                        return
                await self._sleep(delay)
                continue
            self._limiter.accepted(sent_at)
            if self._journal.record_submitted(job.digest, handle.request_id, handle.submitted_at):
                asyncio.get_running_loop().call_later(SUBMITTED_FLUSH_SECONDS, self._flush)
            self._stats.submits_accepted += 1
            job.handle = handle
            job.request_ids.append(handle.request_id)
            job.polls = 0
            job.not_found = 0
            job.attempts = 0
            job.step_started = self._clock()
            self._events.submitted(job)
            return

    def _after_failure(self, job: Job, err: errors.ApiError, sent_at: float) -> float | None:
        """Decide after a failed submit: the delay before trying again, or None when done."""
        verdict = classify(err, reading=False)
        if verdict is Verdict.THROTTLED:
            # A 429 created no job: take back the intent's payment.
            self._not_sent(job)
            self._stats.throttled_submits += 1
            self._limiter.throttled(err.retry_after, sent_at)
            if err.retry_after is not None:
                return err.retry_after
            return self._policy.backoff(min(job.attempts + 1, 4), self._rand)
        if verdict is Verdict.ABORT:
            self._not_sent(job)
            self._events.abort(err)
            self._events.failed(job, ErrorKind.ABORTED, f"run aborted: {err}", err.status)
            return None
        if verdict is Verdict.ROW_ERROR:
            self._events.failed(job, ErrorKind.REJECTED, str(err), err.status)
            return None
        # Transient.
        if may_have_reached_server(err):
            if not job.maybe_billed:
                self._stats.possibly_billed_twice += 1
            job.maybe_billed = True
            if answered_unusably(err) and self._allowance.exhausted(job.prior_paid + job.submits):
                self._events.failed(job, ErrorKind.LOST, self._lost_message(job, err), err.status)
                return None
        else:
            self._not_sent(job)
        job.attempts += 1
        if not self._policy.should_retry(
            attempt=job.attempts, elapsed=self._clock() - job.step_started
        ):
            self._events.failed(
                job,
                ErrorKind.RETRIES_EXHAUSTED,
                f"submit failed {job.attempts} times; last: {err}",
                err.status,
            )
            return None
        self._stats.retries += 1
        return self._policy.backoff(job.attempts, self._rand)

    def _not_sent(self, job: Job) -> None:
        """A submit provably never reached the server: it was not paid for."""
        self._journal.record_not_sent(job.digest)
        self._stats.submits -= 1
        job.submits -= 1
        self._budget.give_back()

    def _lost_message(self, job: Job, last: errors.ApiError | None = None) -> str:
        paid = job.prior_paid + job.submits
        ids = ", ".join(job.request_ids) or "none recorded"
        how = f"; the last answer: {last}" if last is not None else ""
        return (
            f"the service lost this text's job again and again: it was submitted {paid} times "
            f"(--max-resubmits {self._allowance.max_resubmits}) and is not paid for again "
            f"(request_ids: {ids}){how}; run with --retry-failed to try once more"
        )
