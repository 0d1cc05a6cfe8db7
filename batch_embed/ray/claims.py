"""Who submits a text: the pure state behind the registry actor (one submit per text).

Every text's digest has at most one entry. The first worker to claim it is told
``SUBMIT``; it submits and publishes the request_id (or publishes the failure). Any other
worker claiming it is told ``PENDING`` until then (and waits on the registry), afterwards
``JOB`` with the request_id, and polls and fetches that same job itself: vectors never
travel through the registry. A job found lost (404 or expired) is reported with
:meth:`ClaimBook.lost`: the first reporter of that request_id resubmits, at most
``max_resubmits`` times per text, after which the text fails as ``lost`` for everyone.
With ``max_submits``, a claim or resubmit past that many granted submits is ``CAPPED``.

A run resumed after a kill starts from the jobs the killed run had submitted
(:meth:`ClaimBook.adopt`: JOB at once, no submit granted), and every request_id published
is kept in order (:meth:`ClaimBook.published_since`) for the driver to journal.

::

    (none) --claim--> PENDING --publish--> JOB --lost (allowance left)--> PENDING ...
       |                 |                   |\\--lost (allowance spent)--> FAILED
       |                 |                   \\--lost (cap spent)--------> CAPPED
       |                 \\--fail-----------> FAILED
       \\--claim (cap spent)--> CAPPED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from ..records import ErrorKind


class ClaimKind(enum.Enum):
    """What a claimant is to do with a text."""

    SUBMIT = "submit"
    """Submit it, then publish the request_id (or the failure)."""
    PENDING = "pending"
    """Another worker is submitting it: wait for the registry."""
    JOB = "job"
    """It is submitted: poll and fetch ``request_id``."""
    FAILED = "failed"
    """Its submit failed, or its job was lost too often: an error row."""
    CAPPED = "capped"
    """The run's submit cap is spent: not submitted, left for a later run."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The registry's answer for one digest."""

    kind: ClaimKind
    request_id: str | None = None
    submitted_at: float = 0.0
    error_kind: ErrorKind | None = None
    message: str | None = None


class SubmittedJob(NamedTuple):
    """A text's job as the API answered its submit: what a resumed run re-attaches to."""

    digest: str
    request_id: str
    submitted_at: float
    """Wall-clock seconds (the API keeps the job for an hour from then)."""


@dataclass(slots=True)
class _Entry:
    state: ClaimKind = ClaimKind.PENDING
    request_id: str | None = None
    submitted_at: float = 0.0
    error_kind: ErrorKind | None = None
    message: str | None = None
    resubmits: int = 0
    request_ids: list[str] = field(default_factory=list)

    def claim(self) -> Claim:
        return Claim(self.state, self.request_id, self.submitted_at, self.error_kind, self.message)


class ClaimBook:
    """Digest -> claim; see the module doc."""

    def __init__(self, *, max_resubmits: int, max_submits: int | None = None) -> None:
        if max_resubmits < 0:
            raise ValueError(f"max_resubmits must be >= 0, got {max_resubmits}")
        if max_submits is not None and max_submits < 0:
            raise ValueError(f"max_submits must be >= 0, got {max_submits}")
        self.max_resubmits = max_resubmits
        self.max_submits = max_submits
        self.capped = 0
        """Texts the cap kept from being submitted."""
        self._entries: dict[str, _Entry] = {}
        self._published: list[SubmittedJob] = []
        self._published_base = 0
        self.submits_granted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, digest: str) -> Claim:
        """The claim on ``digest``: SUBMIT for its first claimant, its state for the others."""
        entry = self._entries.get(digest)
        if entry is None:
            if self._cap_spent():
                self._entries[digest] = _Entry(ClaimKind.CAPPED)
                self.capped += 1
                return Claim(ClaimKind.CAPPED)
            self._entries[digest] = _Entry()
            self.submits_granted += 1
            return Claim(ClaimKind.SUBMIT)
        return entry.claim()

    def _cap_spent(self) -> bool:
        return self.max_submits is not None and self.submits_granted >= self.max_submits

    def adopt(self, job: SubmittedJob) -> None:
        """Start ``job.digest`` at JOB with an earlier run's job (no submit granted; a
        digest already known keeps its state)."""
        if job.digest not in self._entries:
            entry = self._entries[job.digest] = _Entry(ClaimKind.JOB)
            entry.request_id, entry.submitted_at = job.request_id, job.submitted_at
            entry.request_ids.append(job.request_id)

    def published_since(self, cursor: int) -> tuple[list[SubmittedJob], int]:
        """The jobs published after the first ``cursor``, and the cursor for the next call.

        Passing a cursor acknowledges the jobs before it: they are dropped, so the log holds
        only what its one reader (the driver's journal) has not written yet.
        """
        acknowledged = cursor - self._published_base
        if acknowledged > 0:
            del self._published[:acknowledged]
            self._published_base = cursor
        return list(self._published), self._published_base + len(self._published)

    def peek(self, digest: str) -> Claim:
        """The state of ``digest`` without claiming it (KeyError when never claimed)."""
        return self._entries[digest].claim()

    def publish(self, digest: str, request_id: str, submitted_at: float) -> None:
        """The claimant submitted ``digest``: its job is ``request_id``."""
        entry = self._entries[digest]
        entry.state, entry.request_id, entry.submitted_at = ClaimKind.JOB, request_id, submitted_at
        entry.request_ids.append(request_id)
        self._published.append(SubmittedJob(digest, request_id, submitted_at))

    def fail(self, digest: str, kind: ErrorKind, message: str) -> None:
        """The claimant could not submit ``digest``: every waiter gets this error."""
        entry = self._entries[digest]
        entry.state, entry.error_kind, entry.message = ClaimKind.FAILED, kind, message

    def lost(self, digest: str, request_id: str) -> Claim:
        """Job ``request_id`` of ``digest`` is lost: SUBMIT (resubmit it) for the first
        reporter while the allowance lasts, FAILED (``lost``) after, CAPPED when the run's
        cap is spent; a later reporter of the same job gets the current state (the new job,
        or PENDING)."""
        entry = self._entries[digest]
        if entry.state is not ClaimKind.JOB or entry.request_id != request_id:
            return entry.claim()
        if entry.resubmits >= self.max_resubmits:
            ids = ", ".join(entry.request_ids)
            entry.state, entry.error_kind = ClaimKind.FAILED, ErrorKind.LOST
            entry.message = (
                f"the service lost this text's job {len(entry.request_ids)} times "
                f"(request_ids: {ids})"
            )
            return entry.claim()
        if self._cap_spent():
            entry.state, entry.request_id = ClaimKind.CAPPED, None
            self.capped += 1
            return entry.claim()
        entry.resubmits += 1
        self.submits_granted += 1
        entry.state, entry.request_id = ClaimKind.PENDING, None
        return Claim(ClaimKind.SUBMIT)
