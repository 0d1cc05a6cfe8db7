"""The engine's unit of work: one distinct text, the rows waiting on it, and its job's history."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ApiError
from .records import ErrorKind, JobHandle, RowKey
from .vectors import Vector


class Resubmit(enum.Enum):
    """Why a text is submitted again (each one is a second payment, counted)."""

    EXPIRED = "expired"
    """Its job neared or passed the 1-hour retention before a result was fetched."""
    NOT_FOUND = "not_found"
    """Its request_id answered 404 repeatedly inside its hour."""
    LOST_ANSWER = "lost_answer"
    """A submit's answer was lost after the request may have reached the server."""
    UNRECORDED = "unrecorded"
    """An earlier run wrote the intent but never recorded an answer (killed mid-submit)."""


@dataclass(slots=True, eq=False)
class WaitingRow:
    """A row whose vector is the job's: where it came from, for the output and for errors."""

    key: RowKey
    source: str
    location: str


@dataclass(slots=True, eq=False)
class Job:
    """One distinct text on its way to a vector (identity equality: one object per text)."""

    text: str
    digest: str
    rows: list[WaitingRow]
    handle: JobHandle | None = None
    request_ids: list[str] = field(default_factory=list)
    submits: int = 0
    """Submits sent for this text in this run (each a paid call)."""
    prior_paid: int = 0
    """Submits earlier runs paid for this text (against its resubmit allowance)."""
    attempts: int = 0
    """Transient failures of the current step, reset when the step succeeds."""
    step_started: float = 0.0
    """Loop time when the current step (submit, or polling one handle) began."""
    polls: int = 0
    """Status polls of the current handle."""
    first_poll_plan: float = 0.0
    """The age (seconds since submit) the current handle's first poll was planned for."""
    not_found: int = 0
    """404s in a row for the current handle."""
    maybe_billed: bool = False
    """A submit of this text may have created a job whose answer we never saw."""
    resubmit_reason: Resubmit | None = None

    @property
    def key_summary(self) -> str:
        """The first waiting row's key, for messages."""
        return str(self.rows[0].key) if self.rows else self.digest[:12]


class EngineEvents(Protocol):
    """What the submitter and the poller report to the pipeline that wires them."""

    def submitted(self, job: Job) -> None:
        """The job has a handle; start polling it."""

    async def vector(self, job: Job, vector: Vector) -> None:
        """The job's vector arrived; write it for every waiting row (may wait for room)."""

    def failed(self, job: Job, kind: ErrorKind, message: str, status: int | None) -> None:
        """The text cannot be embedded; every waiting row becomes an error row."""

    def resubmit(self, job: Job, reason: Resubmit) -> None:
        """Submit the text again (a second payment, counted)."""

    def abort(self, error: ApiError) -> None:
        """The run cannot go on (401, 403, 406, unknown model): stop submitting."""

    def left(self, job: Job) -> None:
        """The run's submit cap is reached: the job is left, unsubmitted, for the next run."""
