"""The registry actor: one per ``embed_dataset`` run, so identical texts are submitted once
across all workers (the states are :mod:`batch_embed.ray.claims`'s).

A named async actor (``batch_embed_registry:<run>``); ``wait`` parks the caller on an
``asyncio.Event`` until the digest leaves PENDING, so waiting costs the registry no polling.
It holds digests and request_ids only, never vectors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from ..records import ErrorKind
from .claims import Claim, ClaimBook, ClaimKind, SubmittedJob

REGISTRY_PREFIX = "batch_embed_registry:"
ACTOR_CONCURRENCY = 10_000


@ray.remote(num_cpus=0)
class RegistryActor:
    """:class:`ClaimBook` as a Ray actor, with waiting."""

    def __init__(self, max_resubmits: int, max_submits: int | None) -> None:
        self._book = ClaimBook(max_resubmits=max_resubmits, max_submits=max_submits)
        self._settled: dict[str, asyncio.Event] = {}

    async def claim_many(self, digests: list[str]) -> list[Claim]:
        """Claim each digest in order (a repeat within the list is PENDING on the first)."""
        return [self._book.claim(digest) for digest in digests]

    async def adopt_many(self, jobs: list[SubmittedJob]) -> int:
        """Re-attach to an earlier run's jobs (:meth:`ClaimBook.adopt`); how many."""
        for job in jobs:
            self._book.adopt(job)
        return len(jobs)

    async def published_since(self, cursor: int) -> tuple[list[SubmittedJob], int]:
        return self._book.published_since(cursor)

    async def wait(self, digest: str) -> Claim:
        """The claim on ``digest`` once it is not PENDING."""
        while (claim := self._book.peek(digest)).kind is ClaimKind.PENDING:
            await self._event(digest).wait()
        return claim

    async def publish(self, digest: str, request_id: str, submitted_at: float) -> None:
        self._book.publish(digest, request_id, submitted_at)
        self._settle(digest)

    async def fail(self, digest: str, kind: ErrorKind, message: str) -> None:
        self._book.fail(digest, kind, message)
        self._settle(digest)

    async def lost(self, digest: str, request_id: str) -> Claim:
        claim = self._book.lost(digest, request_id)
        if claim.kind in (ClaimKind.FAILED, ClaimKind.CAPPED):
            self._settle(digest)
        return claim

    async def stats(self) -> dict[str, int]:
        return {
            "texts": len(self._book),
            "submits_granted": self._book.submits_granted,
            "capped": self._book.capped,
        }

    def _event(self, digest: str) -> asyncio.Event:
        event = self._settled.get(digest)
        if event is None:
            event = self._settled[digest] = asyncio.Event()
        return event

    def _settle(self, digest: str) -> None:
        event = self._settled.pop(digest, None)
        if event is not None:
            event.set()


def registry_actor(run: str, *, max_resubmits: int, max_submits: int | None = None) -> Any:
    """The registry actor of run ``run`` (created if there is none)."""
    return RegistryActor.options(  # type: ignore[attr-defined]
        name=REGISTRY_PREFIX + run,
        get_if_exists=True,
        max_concurrency=ACTOR_CONCURRENCY,
    ).remote(max_resubmits, max_submits)


def find_registry(run: str) -> Any:
    """The registry actor of run ``run`` (ValueError when there is none)."""
    return ray.get_actor(REGISTRY_PREFIX + run)
