"""The values that flow between the stages: rows, job handles, job states, error records."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

RowKey = str | int
"""A row's identity: the input's id value (its type kept), or ``"<file>:<line>"`` when derived."""


def text_hash(text: str) -> str:
    """The content hash written beside every vector: SHA-256 of the UTF-8 text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Row:
    """One input row ready to embed.

    ``source`` is the file as the user named it; ``location`` is ``"line N"`` (JSONL,
    1-based) or ``"row N"`` (Parquet, 0-based as pyarrow counts) so that messages can point
    at it.
    """

    key: RowKey
    text: str
    source: str
    location: str
    text_hash: str


class ErrorKind(enum.Enum):
    """Why a row ended without a vector (the ``kind`` column of the errors output)."""

    BAD_INPUT = "bad_input"
    """The row itself is unusable: malformed JSON, not an object, text missing/empty/non-string."""
    TOO_LONG = "too_long"
    """The text exceeds the model's token limit and truncation was not asked for."""
    DUPLICATE_ID = "duplicate_id"
    """The id was seen before with a different text."""
    REJECTED = "rejected"
    """The API answered 400 to the submit: the request's parameters were refused."""
    FAILED = "failed"
    """The job ended FAILED (HTTP 422), content blocks included; Segmind's text is the message."""
    BAD_OUTPUT = "bad_output"
    """The job completed but its output is not a valid vector."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """5xx, timeouts or dropped connections persisted past the retry budget."""
    LOST = "lost"
    """The service kept losing the text's job (404 within the hour, expiry, lost answers):
    it was resubmitted ``max_resubmits`` times over the output's life; ``request_ids`` lists
    the jobs."""
    ABORTED = "aborted"
    """The run stopped (401/403/406 or a signal) before this row could be embedded."""
    CAPPED = "capped"
    """The run's submit cap was spent before this row's text was submitted: not a fault of
    the row, never written to an errors output; a later run embeds it (the ray engine's
    rows carry it, the local engine leaves such rows pending in its journal)."""


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One row that could not be embedded, as written to the errors output."""

    key: RowKey | None
    source: str
    location: str
    kind: ErrorKind
    message: str
    field: str | None = None
    http_status: int | None = None
    attempts: int = 0
    request_ids: tuple[str, ...] = ()


class JobState(enum.Enum):
    """The state of a v2 job as the status endpoint reports it; an unknown one is an error."""

    QUEUED = "QUEUED"
    """Accepted, waiting for a worker."""
    PROCESSING = "PROCESSING"
    """Running on a worker."""
    COMPLETED = "COMPLETED"
    """Done: the result body is ready at the response URL."""
    FAILED = "FAILED"
    """Errored, content blocks included; the status body carries ``error``."""

    @property
    def terminal(self) -> bool:
        """True for COMPLETED and FAILED."""
        return self in (JobState.COMPLETED, JobState.FAILED)


@dataclass(frozen=True, slots=True)
class JobHandle:
    """A submitted v2 job: what the submit answer gave us, and when we sent it (wall clock)."""

    request_id: str
    status_url: str
    response_url: str
    submitted_at: float = 0.0


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One answer of the status endpoint."""

    state: JobState
    error: str | None = None
    inference_time: float | None = None
    raw: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
