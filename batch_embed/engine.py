"""The engine of one run: rows in, jobs through the submitter and poller, vectors out.

:class:`Engine` holds the run's in-flight state (one :class:`Job` per distinct text, at most
``max_in_flight`` of them), routes each row the reader produces (skip, wait on a job, copy
at the end, fail, re-attach or submit: see :mod:`routing`), and handles the events the
submitter and poller report (:class:`jobs.EngineEvents`). Which ids and texts were seen
lives in the journal on disk, not in memory.
"""

from __future__ import annotations

import asyncio
import time

from .client import SegmindClient
from .config import RunConfig
from .error_sink import ErrorSink
from .errors import ApiError
from .fields import duplicate_id_message
from .jobs import Job, Resubmit, WaitingRow
from .journal import Journal, RowState, RowVerdict, TextState
from .layout import OutputLayout
from .poller import Poller
from .ratelimit import AdaptiveLimiter, RateController
from .reader import Reader
from .records import ErrorKind, ErrorRecord, Row
from .routing import TextAction, text_action
from .spending import ResubmitAllowance, SubmitBudget
from .stats import RunStats
from .submitter import Submitter
from .vectors import Vector
from .write_stage import WriteStage
from .writer import PartWriter

MAX_WAITING_ROWS = 1000
"""Rows attached to one in-flight job; more of the same text are copied at the end instead."""


class Engine:
    """One run's state and the engine's event handlers (see :class:`jobs.EngineEvents`)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        client: SegmindClient,
        journal: Journal,
        writer: PartWriter,
        sink: ErrorSink,
        layout: OutputLayout,
        stats: RunStats,
        stop: asyncio.Event,
    ) -> None:
        self.config = config
        self.client = client
        self.journal = journal
        self.sink = sink
        self.layout = layout
        self.stats = stats
        self.stop = stop
        loop = asyncio.get_running_loop()
        clock = loop.time
        self.budget = SubmitBudget(config.submit_cap)
        self.id_field = config.id_field
        """The field keys come from (settled by the reader's preflight)."""
        self.submit_limiter = AdaptiveLimiter(RateController(config.submit_rate), clock=clock)
        self.read_limiter = (
            self.submit_limiter
            if config.shared_limit
            else AdaptiveLimiter(RateController(config.read_rate), clock=clock)
        )
        self.submitter = Submitter(
            client=client,
            limiter=self.submit_limiter,
            journal=journal,
            policy=config.retry,
            events=self,
            stats=stats,
            workers=min(config.max_in_flight, 64),
            clock=clock,
            halted=lambda: self.halted,
            budget=self.budget,
            allowance=ResubmitAllowance(config.max_resubmits),
        )
        self.poller = Poller(
            client=client,
            limiter=self.read_limiter,
            policy=config.retry,
            events=self,
            stats=stats,
            concurrency=min(config.max_in_flight, 128),
            retention=config.retention,
            retention_margin=config.retention_margin,
            clock=clock,
            draining=lambda: self.submitter.idle,
        )
        self.by_digest: dict[str, Job] = {}
        self.failed_here: dict[str, tuple[str, str, int | None]] = {}
        self.slots = asyncio.Semaphore(config.max_in_flight)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.output = WriteStage(
            writer=writer,
            journal=journal,
            stats=stats,
            rows_per_part=config.rows_per_part,
            commit_interval=config.commit_interval,
            finish=self.finish,
        )
        self.abort_reason: str | None = None
        self.read_all = False
        """True once the producer routed every row of every input (vanished rows are known)."""

    # -- producer --------------------------------------------------------------------------

    async def produce(self, reader: Reader) -> None:
        """Read every batch and route its rows; stop early on abort, signal or the cap."""
        self.id_field = reader.id_field
        for batch in reader.batches():
            if self.stopping:
                return
            rows: list[Row] = []
            for item in batch:
                self.stats.ledger(item.source).read += 1
                if isinstance(item, ErrorRecord):
                    self.record_error(item)
                else:
                    rows.append(item)
            for row, verdict in zip(rows, self.journal.admit_rows(rows), strict=True):
                await self.route(row, verdict)
            await asyncio.sleep(0)
        self.read_all = not self.stopping

    @property
    def halted(self) -> bool:
        """A signal or the API stopped the run: nothing more is submitted."""
        return self.stop.is_set() or self.abort_reason is not None

    @property
    def stopping(self) -> bool:
        """Halted, or at the submit cap: no more rows are read."""
        return self.halted or self.budget.refused

    async def route(self, row: Row, verdict: RowVerdict) -> None:
        ledger = self.stats.ledger(row.source)
        if verdict is RowVerdict.DONE:
            ledger.skipped += 1
            self.stats.resumed_done += 1
            return
        if verdict is RowVerdict.REPEAT:
            ledger.skipped += 1
            self.stats.repeated_ids += 1
            return
        if verdict is RowVerdict.CONFLICT:
            self.record_error(
                ErrorRecord(
                    key=row.key,
                    source=row.source,
                    location=row.location,
                    kind=ErrorKind.DUPLICATE_ID,
                    message=duplicate_id_message(
                        row.key,
                        f"{row.source}, {row.location}",
                        self.id_field,
                        self.journal.row_location(row.key),
                    ),
                    field=self.id_field,
                )
            )
            return
        if verdict is RowVerdict.CHANGED:
            self.stats.changed_rows += 1
        waiting = WaitingRow(row.key, row.source, row.location)
        digest = row.text_hash
        job = self.by_digest.get(digest)
        if job is not None and len(job.rows) < MAX_WAITING_ROWS:
            job.rows.append(waiting)
            self.stats.duplicate_rows += 1
            return
        if job is not None or digest in self.output.buffered:
            self.stats.duplicate_rows += 1
            return  # stays PENDING: copied from the output at the end
        failure = self.failed_here.get(digest)
        if failure is not None:
            self.stats.duplicate_rows += 1
            self.fail_rows([waiting], ErrorKind(failure[0]), failure[1], failure[2], ())
            return
        known = self.journal.text(digest)
        action = text_action(
            known,
            now=time.time(),
            usable_for=self.config.retention - self.config.retention_margin,
            retry_failed=self.config.retry_failed,
        )
        if action is TextAction.COPY:
            self.stats.duplicate_rows += 1
            return  # stays PENDING: copied from the output at the end
        if action is TextAction.FAIL:
            assert known is not None and known.error_kind is not None
            kind = ErrorKind(known.error_kind)
            message = known.error_message or kind.value
            self.failed_here[digest] = (kind.value, message, known.http_status)
            self.fail_rows([waiting], kind, message, known.http_status, ())
            return
        await self.slots.acquire()
        self.in_flight += 1
        self.stats.in_flight = self.in_flight
        self.idle.clear()
        self.stats.distinct_texts += 1
        job = Job(text=row.text, digest=digest, rows=[waiting])
        self.by_digest[digest] = job
        if known is not None:
            if known.state is TextState.FAILED and self.config.retry_failed:
                self.journal.forgive(digest)
            else:
                job.prior_paid = known.paid
        if action is TextAction.REATTACH:
            assert known is not None and known.request_id is not None
            job.handle = self.client.handle(
                known.request_id, submitted_at=known.submitted_at or 0.0
            )
            job.request_ids.append(known.request_id)
            self.stats.reattached += 1
            self.poller.add(job)
            return
        if action is TextAction.RESUBMIT_EXPIRED:
            self.stats.resubmits[Resubmit.EXPIRED.value] += 1
        elif action is TextAction.RESUBMIT_UNRECORDED:
            self.stats.resubmits[Resubmit.UNRECORDED.value] += 1
        self.submitter.queue.put_nowait(job)

    # -- engine events ---------------------------------------------------------------------

    def submitted(self, job: Job) -> None:
        self.poller.add(job)

    async def vector(self, job: Job, vector: Vector) -> None:
        await self.output.queue.put((job, vector))

    def failed(self, job: Job, kind: ErrorKind, message: str, status: int | None) -> None:
        if kind is not ErrorKind.ABORTED:
            self.journal.record_text_failed(job.digest, kind.value, message, status)
            self.failed_here[job.digest] = (kind.value, message, status)
        self.fail_rows(job.rows, kind, message, status, tuple(job.request_ids), job.submits)
        self.finish(job)

    def resubmit(self, job: Job, reason: Resubmit) -> None:
        self.stats.resubmits[reason.value] += 1
        job.handle = None
        job.resubmit_reason = reason
        if self.halted:
            self.failed(
                job, ErrorKind.ABORTED, f"run stopped before resubmit ({reason.value})", None
            )
            return
        self.submitter.queue.put_nowait(job)

    def abort(self, error: ApiError) -> None:
        if self.abort_reason is None:
            self.abort_reason = describe_abort(error)
            self.submitter.stop()

    def left(self, job: Job) -> None:
        # Its rows stay PENDING in the journal; resolve_pending counts them as left.
        self.finish(job)

    # -- bookkeeping -----------------------------------------------------------------------

    def finish(self, job: Job) -> None:
        if self.by_digest.get(job.digest) is job:
            del self.by_digest[job.digest]
        self.stats.jobs_finished += 1
        self.in_flight -= 1
        self.stats.in_flight = self.in_flight
        self.slots.release()
        if self.in_flight == 0:
            self.idle.set()

    def record_error(self, record: ErrorRecord) -> None:
        self.sink.write(record)
        self.stats.ledger(record.source).failed += 1
        self.stats.errors_by_kind[record.kind.value] += 1

    def fail_rows(
        self,
        rows: list[WaitingRow],
        kind: ErrorKind,
        message: str,
        status: int | None,
        request_ids: tuple[str, ...],
        attempts: int = 0,
    ) -> None:
        for row in rows:
            self.record_error(
                ErrorRecord(
                    key=row.key,
                    source=row.source,
                    location=row.location,
                    kind=kind,
                    message=message,
                    http_status=status,
                    attempts=attempts,
                    request_ids=request_ids,
                )
            )
        self.journal.mark_rows([row.key for row in rows], RowState.FAILED)


def describe_abort(error: ApiError) -> str:
    """The one-line reason a run stopped, naming the cause (never the key)."""
    status = error.status
    if status == 401:
        return "the API key was refused (HTTP 401); check SEGMIND_API_KEY"
    if status == 403:
        return "the API key may not use this model (HTTP 403)"
    if status == 406:
        return "the account's credits ran out (HTTP 406); top up and run again to resume"
    if status == 404:
        return f"the model was not found (HTTP 404): {error.detail or error}"
    return str(error)
