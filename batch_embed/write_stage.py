"""Stage 4 driver: vectors from the engine -> the part writer -> committed rows in the journal.

One consumer task owns the :class:`PartWriter`, so its buffer is never touched
concurrently. A part is committed when it is full, or ``commit_interval`` after its first
row; only then are its rows COMMITTED and its texts DONE in the journal, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .jobs import Job
from .journal import Journal
from .records import RowKey
from .stats import RunStats
from .vectors import Vector
from .writer import CommittedPart, PartWriter

QUEUE_SIZE = 256
"""Vectors waiting for the writer; a full queue makes the poller wait (back-pressure)."""


class WriteStage:
    """Writes each finished job's vector for its waiting rows and commits parts."""

    def __init__(
        self,
        *,
        writer: PartWriter,
        journal: Journal,
        stats: RunStats,
        rows_per_part: int,
        commit_interval: float,
        finish: Callable[[Job], None],
    ) -> None:
        self.writer = writer
        self.journal = journal
        self.stats = stats
        self.rows_per_part = rows_per_part
        self.commit_interval = commit_interval
        self.finish = finish
        self.queue: asyncio.Queue[tuple[Job, Vector] | None] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.uncommitted: list[tuple[str, str]] = []
        """(source, digest) of the rows in the writer's buffer, in order."""
        self.buffered: set[str] = set()
        """Digests with a vector in the buffer (not yet committed)."""

    async def run(self) -> None:
        """The writer stage: one consumer, so the part buffer is never touched concurrently.

        A part is committed when it is full, or ``commit_interval`` after its first row: a
        timer then puts a ``None`` in the queue to wake the writer (if the queue is full,
        the writer is busy and sees the deadline at its next vector anyway).
        """
        loop = asyncio.get_running_loop()
        interval = self.commit_interval
        queue = self.queue
        oldest: float | None = None
        while True:
            if not self.writer.pending:
                oldest = None
            elif oldest is None:
                oldest = loop.time()
                loop.call_at(oldest + interval, self._wake_writer)
            elif loop.time() - oldest >= interval:
                await self.commit()
                continue
            item = await queue.get()
            try:
                if item is not None:
                    job, vector = item
                    for row in job.rows:
                        await self.add_row(row.key, row.source, job.digest, vector)
                    self.buffered.add(job.digest)
                    self.finish(job)
            finally:
                queue.task_done()

    def _wake_writer(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def add_row(self, key: RowKey, source: str, digest: str, vector: Vector) -> None:
        self.uncommitted.append((source, digest))
        self.stats.rows_received += 1
        if self.writer.pending + 1 >= self.rows_per_part:
            part = await asyncio.to_thread(self.writer.add, key, digest, vector)
        else:
            part = self.writer.add(key, digest, vector)
        if part is not None:
            self.committed(part)

    def committed(self, part: CommittedPart) -> None:
        done, self.uncommitted = self.uncommitted[: part.rows], self.uncommitted[part.rows :]
        self.journal.record_committed(part.keys, (digest for _, digest in done))
        for source, _ in done:
            self.stats.ledger(source).embedded += 1
        self.buffered.clear()

    async def commit(self) -> None:
        part = await asyncio.to_thread(self.writer.commit)
        if part is not None:
            self.committed(part)
