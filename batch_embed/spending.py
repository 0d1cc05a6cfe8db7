"""What a run may pay: the submit cap, and the resubmit allowance of one text.

Both are checked by the submitter right before it spends: a submit is reserved from the
cap before its slot and intent, and given back when it provably was not sent (a 429, a
stop, a connection that never opened), so a run stops exactly at ``max_submits`` paid calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MAX_RESUBMITS = 2
"""Resubmits of one text over the output's life (a job lost, expired, or its answer lost)."""


def cap_from(max_submits: int | None, max_cost: float | None, price: float | None) -> int | None:
    """The submit cap a run obeys: the lower of ``max_submits`` and what ``max_cost`` buys."""
    caps = [] if max_submits is None else [max_submits]
    if max_cost is not None and price is not None:
        caps.append(math.floor(max_cost / price + 1e-9))
    return min(caps) if caps else None


class SubmitBudget:
    """The paid submits a run may still make; ``limit`` None means no cap."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.spent = 0
        self.refused = False
        """True once a submit was refused for the cap: the run stopped at it."""

    def take(self) -> bool:
        """Reserve one submit; False (and ``refused`` set) when the cap is reached."""
        if self.limit is not None and self.spent >= self.limit:
            self.refused = True
            return False
        self.spent += 1
        return True

    def give_back(self) -> None:
        """A reserved submit was not sent after all (not paid)."""
        self.spent -= 1


@dataclass(frozen=True, slots=True)
class ResubmitAllowance:
    """How often one text may be submitted in all: once, plus ``max_resubmits``."""

    max_resubmits: int = DEFAULT_MAX_RESUBMITS

    def exhausted(self, paid: int) -> bool:
        """True when a text with ``paid`` submits so far may not be submitted again."""
        return paid >= 1 + self.max_resubmits
