"""Pure decisions: what a row's text needs, given what the journal knows of it.

The engine (a real run) and the plan (what a run would pay) both ask :func:`text_action`, so
the plan's ``to_submit`` is what the run submits. A text already handled in this run (a job
in flight, a vector buffered, a failure seen) is the engine's own business before this.
"""

from __future__ import annotations

import enum

from .journal import TextRecord, TextState
from .records import ErrorKind

CONTENT_FAILURES = frozenset(
    {
        ErrorKind.FAILED.value,
        ErrorKind.REJECTED.value,
        ErrorKind.BAD_OUTPUT.value,
        ErrorKind.LOST.value,
    }
)
"""Failures a re-run does not pay to repeat unless ``--retry-failed``: the same text would
fail the same way (400, 422, an unusable vector), or it was resubmitted as often as allowed.
Every other failure (5xx or timeouts exhausted, an expired result, a stopped run) is of a
passing cause: the next run tries again."""


class TextAction(enum.Enum):
    """What one distinct text of this run needs."""

    COPY = "copy"
    """Its vector is in the output: copy it for this row at the end (no call)."""
    FAIL = "fail"
    """It failed for its content before: the row gets that error (no call)."""
    REATTACH = "reattach"
    """A job submitted within its hour is known: poll it (no new submit)."""
    SUBMIT = "submit"
    """Submit it (a paid call)."""
    RESUBMIT_EXPIRED = "resubmit_expired"
    """Its job's hour is (nearly) over: submit it again (a second payment)."""
    RESUBMIT_UNRECORDED = "resubmit_unrecorded"
    """An earlier run wrote the intent but never the answer: submit again (maybe paid twice)."""

    @property
    def paid(self) -> bool:
        """True when the action is a submit (each one a paid call)."""
        return self in (
            TextAction.SUBMIT,
            TextAction.RESUBMIT_EXPIRED,
            TextAction.RESUBMIT_UNRECORDED,
        )


def text_action(
    known: TextRecord | None,
    *,
    now: float,
    usable_for: float,
    retry_failed: bool = False,
) -> TextAction:
    """Decide for a text not yet handled in this run.

    ``now`` is wall-clock time; ``usable_for`` how long after its submit a job may still be
    re-attached (the retention minus a margin for polling and fetching).
    """
    if known is None:
        return TextAction.SUBMIT
    if known.state is TextState.DONE:
        return TextAction.COPY
    if known.state is TextState.FAILED:
        if known.error_kind in CONTENT_FAILURES and not retry_failed:
            return TextAction.FAIL
        return TextAction.SUBMIT
    if known.state is TextState.SUBMITTED and known.request_id:
        if now - (known.submitted_at or 0.0) < usable_for:
            return TextAction.REATTACH
        return TextAction.RESUBMIT_EXPIRED
    if known.state is TextState.INTENT:
        return TextAction.RESUBMIT_UNRECORDED
    return TextAction.SUBMIT
