"""One text's way through the API from a Ray worker: claim, submit or join, poll, fetch.

The registry says whether this worker submits the text or joins a job another worker
submitted (:mod:`batch_embed.ray.claims`); either way the worker polls and fetches the job
itself. Polls follow :class:`~batch_embed.poll_schedule.LatencyEstimator` (first poll at
the learned latency, later ones after growing intervals), every read under the shared read
budget. A job that 404s, or that nears the end of its retention, is reported lost to the
registry, which has it resubmitted (a bounded number of times) or failed as ``lost``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..client import SegmindClient
from ..poll_schedule import LatencyEstimator
from ..ratelimit import Limiter
from ..records import ErrorKind, JobHandle, JobState
from ..retry import RetryPolicy
from ..vectors import Vector
from .calls import JobLost, RowFailure, call
from .claims import Claim, ClaimKind

RETENTION_SECONDS = 3600.0
"""The API keeps a job this long after its submit."""
RETENTION_MARGIN = 300.0
"""A job this close to its expiry is given up as lost (and resubmitted) before its 404."""


CAPPED_MESSAGE = "not submitted: the run's submit cap was spent (a later run embeds it)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A text's vector, or why it has none."""

    vector: Vector | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None


class TextEmbedder:
    """Embeds texts for one worker process; see the module doc."""

    def __init__(
        self,
        *,
        client: SegmindClient,
        submits: Limiter,
        reads: Limiter,
        registry: Any,
        policy: RetryPolicy,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        honour_retry_after: bool = True,
    ) -> None:
        self._honour = honour_retry_after
        self._client = client
        self._submits = submits
        self._reads = reads
        self._registry = registry
        self._policy = policy
        self._wall = wall
        self._sleep = sleep
        self.latency = LatencyEstimator()

    async def embed(self, digest: str, text: str, claim: Claim) -> Outcome:
        """The outcome of ``text`` (``digest``), starting from the registry's ``claim``."""
        while True:
            if claim.kind is ClaimKind.PENDING:
                claim = await self._registry.wait.remote(digest)
            if claim.kind is ClaimKind.FAILED:
                return Outcome(error_kind=claim.error_kind, error=claim.message)
            if claim.kind is ClaimKind.CAPPED:
                return Outcome(error_kind=ErrorKind.CAPPED, error=CAPPED_MESSAGE)
            if claim.kind is ClaimKind.SUBMIT:
                try:
                    job = await self._submit(text)
                except RowFailure as failure:
                    self._registry.fail.remote(digest, failure.kind, failure.message)
                    return Outcome(error_kind=failure.kind, error=failure.message)
                except BaseException:
                    self._registry.fail.remote(
                        digest, ErrorKind.ABORTED, "the submitting worker stopped"
                    )
                    raise
                self._registry.publish.remote(digest, job.request_id, job.submitted_at)
            else:
                assert claim.request_id is not None
                job = self._client.handle(claim.request_id, submitted_at=claim.submitted_at)
            try:
                vector = await self._follow(job)
            except RowFailure as failure:
                return Outcome(error_kind=failure.kind, error=failure.message)
            except JobLost:
                claim = await self._registry.lost.remote(digest, job.request_id)
                continue
            return Outcome(vector=vector)

    async def _submit(self, text: str) -> JobHandle:
        return await call(
            self._submits,
            lambda: self._client.submit(text),
            reading=False,
            policy=self._policy,
            honour_retry_after=self._honour,
        )

    async def _follow(self, job: JobHandle) -> Vector:
        """Poll ``job`` until it ends, then fetch its vector (JobLost when it vanished)."""
        planned = self.latency.first_delay()
        first = True
        wait = job.submitted_at + planned - self._wall()
        while True:
            if wait > 0:
                await self._sleep(wait)
            age = self._wall() - job.submitted_at
            if age > RETENTION_SECONDS - RETENTION_MARGIN:
                raise JobLost(f"job {job.request_id} near its retention's end")
            status = await call(
                self._reads,
                lambda: self._client.status(job),
                reading=True,
                policy=self._policy,
                honour_retry_after=self._honour,
            )
            if first:
                self.latency.observe_first_poll(age, status.state.terminal, planned)
                first = False
            if status.state is JobState.FAILED:
                raise RowFailure(
                    ErrorKind.FAILED,
                    f"job {job.request_id} FAILED: {status.error or 'no reason given'}",
                    422,
                )
            if status.state is JobState.COMPLETED:
                return await call(
                    self._reads,
                    lambda: self._client.result(job),
                    reading=True,
                    policy=self._policy,
                    honour_retry_after=self._honour,
                )
            wait = self.latency.next_delay(age)
