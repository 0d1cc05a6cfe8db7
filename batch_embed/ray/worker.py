"""The callable class ``embed_dataset`` maps over batches: one per Ray actor of the pool.

Each actor keeps its own event loop, one :class:`~batch_embed.client.SegmindClient` (one
connection pool) and one :class:`~batch_embed.ray.texts.TextEmbedder` (its latency estimate
lives across batches). A batch's distinct texts are claimed from the registry in one call,
then embedded concurrently, paced by the limiters; rows repeating a text in the batch share
its outcome. The batch comes back with every row, in order (:mod:`batch_embed.ray.columns`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from ..client import Secret, SegmindClient
from ..models import model_spec
from ..records import ErrorKind, text_hash
from ..retry import RetryPolicy
from .budget import RequestClass
from .columns import with_outcomes
from .fixed_rate import FixedRateLimiter
from .shared_limiter import SharedLimiter
from .texts import Outcome, TextEmbedder

Limiting = Literal["shared", "per-actor"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """What every actor of one ``embed_dataset`` needs to know."""

    base_url: str
    api_key: Secret = field(repr=False)
    model: str
    dimensions: int | None
    text_column: str
    policy: RetryPolicy
    allow_insecure_http: bool = False
    limiting: Limiting = "shared"
    submit_rate: float = 0.0
    """Requests/s of each actor's own limiter when ``limiting`` is ``per-actor``."""
    read_rate: float = 0.0


class EmbedWorker:
    """Embeds one batch (a ``pyarrow.Table``) per call; see the module doc."""

    def __init__(self, settings: WorkerSettings, budget: Any, registry: Any) -> None:
        self._settings = settings
        self._registry = registry
        self._dim = model_spec(settings.model, settings.dimensions).output_dim
        self._loop = asyncio.new_event_loop()
        self._client = SegmindClient(
            api_key=settings.api_key.value,
            base_url=settings.base_url,
            model=model_spec(settings.model, settings.dimensions),
            allow_insecure_http=settings.allow_insecure_http,
        )
        self._loop.run_until_complete(self._client.open())
        self._submits: SharedLimiter | FixedRateLimiter
        self._reads: SharedLimiter | FixedRateLimiter
        if settings.limiting == "shared":
            self._submits = SharedLimiter(budget, RequestClass.SUBMIT)
            self._reads = SharedLimiter(budget, RequestClass.READ)
        else:
            self._submits = FixedRateLimiter(settings.submit_rate)
            self._reads = FixedRateLimiter(settings.read_rate)
        self._embedder = TextEmbedder(
            client=self._client,
            submits=self._submits,
            reads=self._reads,
            registry=registry,
            policy=settings.policy,
            honour_retry_after=settings.limiting == "shared",
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._loop.run_until_complete(self._embed(batch))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._loop.is_closed():
                self._loop.run_until_complete(self._client.close())
                self._loop.close()

    async def _embed(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self._settings.text_column).to_pylist()
        outcomes: list[Outcome | None] = [None] * len(texts)
        rows_of: dict[str, list[int]] = {}
        text_of: dict[str, str] = {}
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text:
                what = "missing" if text is None else ("empty" if text == "" else "not a string")
                outcomes[i] = Outcome(
                    error_kind=ErrorKind.BAD_INPUT,
                    error=f"column {self._settings.text_column!r} is {what}",
                )
                continue
            digest = text_hash(text)
            rows_of.setdefault(digest, []).append(i)
            text_of[digest] = text
        digests = list(rows_of)
        if digests:
            claims = await self._registry.claim_many.remote(digests)
            results = await asyncio.gather(
                *(
                    self._embedder.embed(digest, text_of[digest], claim)
                    for digest, claim in zip(digests, claims, strict=True)
                )
            )
            for digest, outcome in zip(digests, results, strict=True):
                for i in rows_of[digest]:
                    outcomes[i] = outcome
        self._submits.flush()
        self._reads.flush()
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(outcomes), "every row has an outcome"
        return with_outcomes(batch, done, self._dim)
