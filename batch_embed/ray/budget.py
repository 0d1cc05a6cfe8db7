"""The budget actor: one per account and API root, holding the submit and read rates of
every worker in the cluster (see :mod:`batch_embed.ray.slots` for how slots are granted).

It is a named async actor (``batch_embed_budget:<key>``, fetched with ``get_if_exists``),
so every ``embed_dataset`` of one driver against the same account shares it; its methods
never wait, so a high ``max_concurrency`` keeps it from becoming a queue. The first creator's
rates win: a later ``embed_dataset`` with other rates reuses the live actor as it is.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import time
from typing import Any

import ray

from .slots import ClassStats, Grant, SlotBook, class_stats, shared_controller

BUDGET_PREFIX = "batch_embed_budget:"
ACTOR_CONCURRENCY = 1000
REPORT_DELAY = 0.15
"""Seconds a 429 waits for the acceptances reported after it (shared_limiter.REPORT_SECONDS
and a round trip)."""


class RequestClass(enum.Enum):
    """The two budgets of the API (see ``shared/segmind-v2.md``)."""

    SUBMIT = "submit"
    """Submits: the plan's paid requests per minute."""
    READ = "read"
    """Status polls and result fetches."""


def budget_key(root: str, api_key: str) -> str:
    """A name for the account behind ``api_key`` at ``root``: a hash, never the key."""
    return hashlib.sha256(f"{root}\0{api_key}".encode()).hexdigest()[:16]


class Budget:
    """The slot books of both classes; the pure state behind :class:`BudgetActor`."""

    def __init__(self, *, submit_rate: float, read_rate: float) -> None:
        self.books = {
            RequestClass.SUBMIT: SlotBook(shared_controller(submit_rate)),
            RequestClass.READ: SlotBook(shared_controller(read_rate)),
        }

    def grant(self, cls: RequestClass, k: int, accepted: list[float], now: float) -> Grant:
        book = self.books[cls]
        book.accepted(accepted)
        return book.grant(k, now)

    def report(self, cls: RequestClass, accepted: list[float]) -> None:
        self.books[cls].accepted(accepted)

    def throttled(
        self,
        cls: RequestClass,
        retry_after: float | None,
        sent_at: float | None,
        accepted: list[float],
        now: float,
    ) -> int:
        book = self.books[cls]
        book.accepted(accepted)
        return book.throttled(now, retry_after, sent_at)

    def stats(self, now: float) -> dict[str, ClassStats]:
        return {cls.value: class_stats(book, now) for cls, book in self.books.items()}


@ray.remote(num_cpus=0)
class BudgetActor:
    """:class:`Budget` on the wall clock, as a Ray actor (async: calls interleave)."""

    def __init__(self, submit_rate: float, read_rate: float) -> None:
        self._budget = Budget(submit_rate=submit_rate, read_rate=read_rate)

    async def grant(self, cls: RequestClass, k: int, accepted: list[float]) -> Grant:
        return self._budget.grant(cls, k, accepted, time.time())

    async def report(self, cls: RequestClass, accepted: list[float]) -> None:
        self._budget.report(cls, accepted)

    async def throttled(
        self,
        cls: RequestClass,
        retry_after: float | None,
        sent_at: float | None,
        accepted: list[float],
    ) -> int:
        """Record a 429, once the other workers' acceptances sent before it are in.

        The controller measures the accepted rate before the throttled send to choose its
        cut; workers report acceptances every REPORT_SECONDS, so the 429 is applied (at the
        time it was reported) only after that long: reacting at once would find the
        window short of the acceptances still on their way and cut far too deep.
        """
        now = time.time()
        self._budget.report(cls, accepted)
        await asyncio.sleep(REPORT_DELAY)
        return self._budget.throttled(cls, retry_after, sent_at, [], now)

    async def stats(self) -> dict[str, ClassStats]:
        return self._budget.stats(time.time())


def budget_actor(key: str, *, submit_rate: float, read_rate: float) -> Any:
    """The live budget actor named for ``key``, created with these rates if there is none."""
    return BudgetActor.options(  # type: ignore[attr-defined]
        name=BUDGET_PREFIX + key,
        get_if_exists=True,
        max_concurrency=ACTOR_CONCURRENCY,
        lifetime=None,
    ).remote(submit_rate, read_rate)
