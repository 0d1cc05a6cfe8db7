"""Jobs and their store. A job's state is computed lazily from its times: no task per job.

A job submitted at ``t0`` with latency ``L`` (plus a cold start ``C``) is QUEUED until
``t0 + C + L/4``, PROCESSING until ``t0 + C + L``, then COMPLETED or FAILED. The store
forgets jobs ``retention`` seconds after submission (amortized, oldest first, on submit),
tracks how many jobs are unfinished (a heap of end times) and keeps a bounded LRU of
rendered result bodies, so a body is serialized once however often it is fetched.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass

from .markers import BadOutput

QUEUE_FRACTION = 0.25
"""Share of a job's (warm) latency spent QUEUED before PROCESSING."""

BODY_CACHE_SIZE = 1024
"""Rendered result bodies kept (a 3072-float body is ~40 KB)."""


class JobState(enum.Enum):
    """The states of a v2 job, as the API spells them."""

    QUEUED = "QUEUED"
    """Accepted, waiting for a worker."""
    PROCESSING = "PROCESSING"
    """Running on a worker."""
    COMPLETED = "COMPLETED"
    """Done; the result body is ready."""
    FAILED = "FAILED"
    """Errored (content blocks included); served with HTTP 422."""


@dataclass(slots=True, eq=False)
class Job:
    """One submitted text and the times that decide its state."""

    request_id: str
    slug: str
    dim: int
    text: str
    digest: bytes
    submitted: float
    started: float
    finished: float
    error: str | None = None
    bad_output: BadOutput | None = None
    cut: int | None = None
    """Gemini's ``output_dimensionality``: the first ``cut`` values, not renormalised."""

    def state(self, now: float) -> JobState:
        """The job's state at ``now``."""
        if now < self.started:
            return JobState.QUEUED
        if now < self.finished:
            return JobState.PROCESSING
        return JobState.FAILED if self.error is not None else JobState.COMPLETED


class JobStore:
    """All live jobs by request id, in submission order."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._order: deque[Job] = deque()
        self._ends: list[float] = []
        self._bodies: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.peak_unfinished = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job, now: float, retention: float) -> None:
        """Store ``job`` (submitted at ``now``), forgetting jobs past ``retention``."""
        self.prune(now, retention)
        self._jobs[job.request_id] = job
        self._order.append(job)
        heapq.heappush(self._ends, job.finished)
        unfinished = self.unfinished(now)
        if unfinished > self.peak_unfinished:
            self.peak_unfinished = unfinished

    def get(self, request_id: str, now: float, retention: float) -> Job | None:
        """The job with ``request_id``, or None if unknown or older than ``retention``."""
        job = self._jobs.get(request_id)
        if job is None or now - job.submitted >= retention:
            return None
        return job

    def prune(self, now: float, retention: float) -> None:
        """Forget the jobs submitted ``retention`` or more seconds before ``now``."""
        order = self._order
        while order and now - order[0].submitted >= retention:
            job = order.popleft()
            self._jobs.pop(job.request_id, None)

    def unfinished(self, now: float) -> int:
        """Jobs not yet in a terminal state at ``now``."""
        ends = self._ends
        while ends and ends[0] <= now:
            heapq.heappop(ends)
        return len(ends)

    def reset_peak(self, now: float) -> None:
        """Restart the peak count from the jobs unfinished now."""
        self.peak_unfinished = self.unfinished(now)

    def cached_body(self, request_id: str, shape: str) -> bytes | None:
        """A rendered result body, if still cached."""
        body = self._bodies.get((request_id, shape))
        if body is not None:
            self._bodies.move_to_end((request_id, shape))
        return body

    def cache_body(self, request_id: str, shape: str, body: bytes) -> None:
        """Keep a rendered result body, evicting the least recently used beyond the bound."""
        self._bodies[(request_id, shape)] = body
        if len(self._bodies) > BODY_CACHE_SIZE:
            self._bodies.popitem(last=False)
