"""Test markers: deterministic behaviours requested from inside a prompt.

=========================  ===============================================================
marker                     effect
=========================  ===============================================================
``[[blocked]]``            the job ends FAILED (422) with :data:`BLOCKED_ERROR`
``[[bad-output:nan]]``     COMPLETED; the vector's first float is the literal ``NaN``
``[[bad-output:zeros]]``   COMPLETED; an all-zeros vector of the right length
``[[bad-output:short]]``   COMPLETED; the vector has half the model's dimensions
``[[bad-output:garbage]]`` COMPLETED; an ``output`` no known shape matches
``[[slow:SECONDS]]``       the job's latency is exactly SECONDS (no cold start)
``[[fail-submit:CODE]]``   the submit is answered with HTTP CODE (400-599); no job, no bill
``[[lost]]``               the job is created (and billed), but the service keeps losing
                           it: its status and result answer 404 at once, every time
=========================  ===============================================================

Markers are part of the text: they count for tokens and for the vector like any other text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BadOutput = Literal["nan", "zeros", "short", "garbage"]

BLOCKED_ERROR = "Content blocked by safety filter: the input was flagged by content moderation"
"""The ``error`` text of a FAILED job (marker ``[[blocked]]`` or ``fail_rate``)."""

_BAD_OUTPUTS: dict[str, BadOutput] = {
    "nan": "nan",
    "zeros": "zeros",
    "short": "short",
    "garbage": "garbage",
}

_MARKER = re.compile(
    r"\[\[(?:(blocked)|bad-output:(nan|zeros|short|garbage)"
    r"|slow:(\d+(?:\.\d*)?|\.\d+)|fail-submit:(\d{3})|(lost))\]\]"
)


@dataclass(frozen=True, slots=True)
class Markers:
    """The markers found in one prompt (the last one wins when a kind repeats)."""

    blocked: bool = False
    bad_output: BadOutput | None = None
    slow: float | None = None
    fail_submit: int | None = None
    lost: bool = False


NO_MARKERS = Markers()


def parse_markers(text: str) -> Markers:
    """Return the markers in ``text``; :data:`NO_MARKERS` (cheaply) when there are none."""
    if "[[" not in text:
        return NO_MARKERS
    blocked = False
    bad_output: BadOutput | None = None
    slow: float | None = None
    fail_submit: int | None = None
    lost = False
    for match in _MARKER.finditer(text):
        block, bad, slow_text, code, lost_mark = match.groups()
        if lost_mark:
            lost = True
        elif block:
            blocked = True
        elif bad:
            bad_output = _BAD_OUTPUTS[bad]
        elif slow_text:
            slow = float(slow_text)
        elif code and 400 <= int(code) <= 599:
            fail_submit = int(code)
    if not (blocked or bad_output or slow is not None or fail_submit or lost):
        return NO_MARKERS
    return Markers(
        blocked=blocked, bad_output=bad_output, slow=slow, fail_submit=fail_submit, lost=lost
    )
