"""The one place that wires the stages: reader -> submitter -> poller -> writer.

Bounded everywhere, so memory does not grow with the corpus: the reader is a lazy iterator,
at most ``max_in_flight`` distinct texts are between submit and write, the writer buffers
one part. Which ids and texts were seen lives in the journal on disk, not in memory.

Every row read ends in exactly one of: a committed output row (embedded), an error record
(failed), or skipped (its id repeats with the same text, or an earlier run committed it).
Rows whose text already has a job wait on it; rows whose text was already written are
copied from the output at the end of the run (one pass over the parts). The per-file
ledger is checked at the end; a mismatch is a bug and is reported loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import loop as event_loop
from .client import SegmindClient, Timeouts
from .config import RunConfig
from .error_sink import ErrorSink
from .errors import ApiError, ConfigError
from .jobs import Job, Resubmit, WaitingRow
from .journal import Journal, RowState, RowVerdict, TextState
from .layout import OutputLayout, layout_for
from .models import model_spec
from .poller import Poller
from .progress import Progress, estimate_rows
from .ratelimit import AdaptiveLimiter, RateController
from .reader import InputFile, Reader, ReaderConfig, resolve_inputs
from .records import ErrorKind, ErrorRecord, Row, RowKey
from .stats import RunStats
from .submitter import Submitter
from .vectors import Vector
from .writer import (
    CommittedPart,
    PartWriter,
    committed_parts,
    drop_stale_rows,
    finalize_single_file,
)

PERMANENT_FAILURES = frozenset(
    {ErrorKind.FAILED.value, ErrorKind.REJECTED.value, ErrorKind.BAD_OUTPUT.value}
)
"""Failures a re-run does not pay to repeat: the same text would fail the same way."""
MAX_WAITING_ROWS = 1000
"""Rows attached to one in-flight job; more of the same text are copied at the end instead."""
COPY_CHUNK = 50_000
"""Pending rows resolved per pass of the end-of-run copy."""


class Outcome(enum.Enum):
    """How a run ended; the CLI maps each to its exit code."""

    COMPLETED = "completed"
    """Every row read was embedded or skipped."""
    ROWS_FAILED = "rows_failed"
    """The run finished; some rows are in the errors output."""
    ABORTED = "aborted"
    """The API refused to go on (401, 403, 406, unknown model)."""
    INTERRUPTED = "interrupted"
    """A signal stopped the run; what was collected is written."""
    LEDGER_MISMATCH = "ledger_mismatch"
    """Rows read != embedded + failed + skipped: a bug, reported loudly."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did: how it ended, its counters, and where its files are."""

    outcome: Outcome
    stats: RunStats
    layout: OutputLayout
    reason: str | None = None


class _Run:
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
        self.writer = writer
        self.sink = sink
        self.layout = layout
        self.stats = stats
        self.stop = stop
        loop = asyncio.get_running_loop()
        clock = loop.time
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
            halted=lambda: self.stopping,
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
        self.buffered: set[str] = set()
        self.failed_here: dict[str, tuple[str, str, int | None]] = {}
        self.slots = asyncio.Semaphore(config.max_in_flight)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.to_write: asyncio.Queue[tuple[Job, Vector] | None] = asyncio.Queue(maxsize=256)
        self.uncommitted: list[tuple[str, str]] = []
        self.abort_reason: str | None = None
        self.read_all = False
        """True once the producer routed every row of every input (vanished rows are known)."""

    # -- producer --------------------------------------------------------------------------

    async def produce(self, reader: Reader) -> None:
        """Read every batch and route its rows; stop early on abort or signal."""
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
    def stopping(self) -> bool:
        return self.stop.is_set() or self.abort_reason is not None

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
                    message=f"{row.source}, {row.location}, field {self.config.id_field!r}: "
                    f"id {row.key!r} was already used by "
                    f"{self.journal.row_location(row.key) or 'an earlier row'} with a different "
                    "text; this row is not embedded",
                    field=self.config.id_field,
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
        if job is not None or digest in self.buffered:
            self.stats.duplicate_rows += 1
            return  # stays PENDING: copied from the output at the end
        failure = self.failed_here.get(digest)
        if failure is not None:
            self.stats.duplicate_rows += 1
            self.fail_rows([waiting], ErrorKind(failure[0]), failure[1], failure[2], ())
            return
        known = self.journal.text(digest)
        if known is not None and known.state is TextState.DONE:
            self.stats.duplicate_rows += 1
            return  # stays PENDING: copied from the output at the end
        if (
            known is not None
            and known.state is TextState.FAILED
            and (known.error_kind in PERMANENT_FAILURES)
        ):
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
        if known is not None and known.state is TextState.SUBMITTED and known.request_id:
            age = time.time() - (known.submitted_at or 0.0)
            if age < self.config.retention - self.config.retention_margin:
                job.handle = self.client.handle(
                    known.request_id, submitted_at=known.submitted_at or 0.0
                )
                job.request_ids.append(known.request_id)
                self.stats.reattached += 1
                self.poller.add(job)
                return
            self.stats.resubmits[Resubmit.EXPIRED.value] += 1
        elif known is not None and known.state is TextState.INTENT:
            self.stats.resubmits[Resubmit.UNRECORDED.value] += 1
        self.submitter.queue.put_nowait(job)

    # -- engine events ---------------------------------------------------------------------

    def submitted(self, job: Job) -> None:
        self.poller.add(job)

    async def vector(self, job: Job, vector: Vector) -> None:
        await self.to_write.put((job, vector))

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
        if self.stopping:
            self.failed(
                job, ErrorKind.ABORTED, f"run stopped before resubmit ({reason.value})", None
            )
            return
        self.submitter.queue.put_nowait(job)

    def abort(self, error: ApiError) -> None:
        if self.abort_reason is None:
            self.abort_reason = describe_abort(error)
            self.submitter.stop()

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

    async def write_vectors(self) -> None:
        """The writer stage: one consumer, so the part buffer is never touched concurrently.

        A part is committed when it is full, or ``commit_interval`` after its first row: a
        timer then puts a ``None`` in the queue to wake the writer (if the queue is full,
        the writer is busy and sees the deadline at its next vector anyway).
        """
        loop = asyncio.get_running_loop()
        interval = self.config.commit_interval
        queue = self.to_write
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
            self.to_write.put_nowait(None)

    async def add_row(self, key: RowKey, source: str, digest: str, vector: Vector) -> None:
        self.uncommitted.append((source, digest))
        self.stats.rows_received += 1
        if self.writer.pending + 1 >= self.config.rows_per_part:
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

    # -- end of run ------------------------------------------------------------------------

    async def resolve_pending(self) -> None:
        """Give every still-PENDING row of this run its vector (copied) or its error."""
        await self.commit()
        pending = self.journal.pending_rows()
        for start in range(0, len(pending), COPY_CHUNK):
            chunk = pending[start : start + COPY_CHUNK]
            wanted: dict[str, list[tuple[RowKey, str, str]]] = {}
            for key, digest, source, location in chunk:
                wanted.setdefault(digest, []).append((key, source, location))
            for digest in list(wanted):
                known = self.journal.text(digest)
                if known is not None and known.state is TextState.DONE:
                    continue
                rows = [WaitingRow(k, s, loc) for k, s, loc in wanted.pop(digest)]
                if known is not None and known.state is TextState.FAILED:
                    kind = ErrorKind(known.error_kind or ErrorKind.FAILED.value)
                    self.fail_rows(
                        rows, kind, known.error_message or kind.value, known.http_status, ()
                    )
                else:
                    reason = self.abort_reason or "run stopped before this row was embedded"
                    self.fail_rows(rows, ErrorKind.ABORTED, reason, None, ())
            if wanted:
                await self.copy_from_output(wanted)
        await self.commit()

    async def copy_from_output(self, wanted: dict[str, list[tuple[RowKey, str, str]]]) -> None:
        """Write rows whose text's vector is already in the output, reading it back once."""
        sources = committed_parts(self.layout.parts_dir)
        if self.layout.single_file and self.layout.output.exists():
            sources.insert(0, self.layout.output)
        needed = set(wanted)
        for path in sources:
            if not needed:
                break
            # One row group at a time: memory stays flat however large the output file.
            with pq.ParquetFile(path) as parquet:
                for index in range(parquet.num_row_groups):
                    if not needed:
                        break
                    hashes = parquet.read_row_group(index, columns=["text_sha256"]).column(
                        "text_sha256"
                    )
                    value_set = pa.array(sorted(needed), type=pa.string())
                    mask = pc.is_in(hashes, value_set=value_set)
                    if not pc.any(mask).as_py():
                        continue
                    group = parquet.read_row_group(index, columns=["text_sha256", "embedding"])
                    table = group.filter(mask)
                    digests = table.column("text_sha256").to_pylist()
                    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
                    vectors = flat.reshape(len(digests), -1).astype(np.float32, copy=False)
                    for digest, vector in zip(digests, vectors, strict=True):
                        if digest not in needed:
                            continue
                        needed.discard(digest)
                        for key, source, _ in wanted[digest]:
                            await self.add_row(key, source, digest, vector)
        for digest in needed:
            rows = [WaitingRow(k, s, loc) for k, s, loc in wanted[digest]]
            self.fail_rows(
                rows,
                ErrorKind.ABORTED,
                "its text's vector is recorded as written but is missing from the "
                "output; run again with --fresh",
                None,
                (),
            )


def drop_superseded(layout: OutputLayout, superseded: dict[RowKey, str]) -> None:
    """Remove from the output the old vectors of rows whose text changed since they were written.

    A row is dropped when its id is superseded and its ``text_sha256`` is not the id's
    current hash. Files are streamed row group by row group and rewritten atomically, only
    when they hold such a row, so a crash leaves every file whole (and the journal keeps the
    superseded keys until this has finished).
    """
    sources = committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []
    if layout.single_file and layout.output.exists():
        sources.insert(0, layout.output)
    for path in sources:
        drop_stale_rows(path, superseded)


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


async def embed(
    config: RunConfig,
    *,
    stop: asyncio.Event | None = None,
    progress: TextIO | None = None,
) -> RunResult:
    """Embed every row of the inputs into the output; see the module doc.

    Raises InputError (a bad input file, before anything is submitted), ConfigError and
    JournalLocked. Everything that happens to rows is in the result and the errors output.
    """
    spec = model_spec(config.model)
    files = resolve_inputs(config.inputs)
    reader = Reader(
        files,
        ReaderConfig(
            text_field=config.text_field,
            id_field=config.id_field,
            truncate=config.truncate,
            model=spec,
        ),
    )
    reader.preflight()
    layout = layout_for(config.output, config.errors)
    stats = RunStats(started=time.monotonic())
    stop = stop or asyncio.Event()
    client = SegmindClient(
        api_key=config.api_key,
        base_url=config.base_url,
        model=spec,
        max_connections=min(512, 2 * config.max_in_flight + 8),
        allow_insecure_http=config.allow_insecure_http,
        timeouts=Timeouts(
            total=config.request_timeout,
            connect=min(10.0, config.request_timeout),
            read=config.request_timeout,
        ),
    )
    with Journal.open(layout.journal, fresh=config.fresh) as journal:
        check_meta(journal, layout, spec.slug, spec.dim, reader.key_type)
        if config.fresh:
            remove_outputs(layout)
        with (
            ErrorSink(layout.errors, mode="fresh") as sink,
            PartWriter(
                layout.parts_dir,
                model=spec,
                key_type=reader.key_type,
                rows_per_part=config.rows_per_part,
            ) as writer,
        ):
            async with client:
                run = _Run(
                    config,
                    client=client,
                    journal=journal,
                    writer=writer,
                    sink=sink,
                    layout=layout,
                    stats=stats,
                    stop=stop,
                )
                view = None
                if progress is not None:
                    reporter = Progress(
                        stats,
                        run.submit_limiter,
                        stream=progress,
                        expected_rows=estimate_rows(files),
                    )
                    view = asyncio.create_task(reporter.run())
                try:
                    await drive(run, reader)
                finally:
                    if view is not None:
                        view.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await view
            await run.resolve_pending()
            await asyncio.to_thread(writer.close)
            if run.read_all:
                stats.vanished_rows = journal.vanished_rows()
            superseded = journal.superseded()
            if superseded:
                await asyncio.to_thread(drop_superseded, layout, superseded)
                journal.clear_superseded()
        if layout.single_file:
            await asyncio.to_thread(finalize_single_file, layout.parts_dir, layout.output)
    for source, file_stats in reader.stats.items():
        stats.truncated += file_stats.truncated
        stats.ledger(source)
    stats.finished = time.monotonic()
    reason = run.abort_reason
    if reason is not None:
        reason = f"{reason}; {rows_left(stats, files)}"
    return RunResult(result_outcome(stats, run, stop), stats, layout, reason)


def rows_left(stats: RunStats, files: list[InputFile]) -> str:
    """How many rows an aborted run leaves to embed (estimated for plain JSONL)."""
    left = stats.errors_by_kind.get(ErrorKind.ABORTED.value, 0)
    estimate = estimate_rows(files)
    if estimate is None:
        return f"{left} rows read were not embedded, plus the rows not read yet"
    left += max(0, estimate - stats.rows_read)
    exact = all(file.format == "parquet" for file in files)
    return f"{'' if exact else 'about '}{left} rows are left to embed"


async def drive(run: _Run, reader: Reader) -> None:
    """Run the stages until every admitted job is finished (or the grace period ends)."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(run.submitter.run()),
            group.create_task(run.poller.run()),
            group.create_task(run.write_vectors()),
        ]
        try:
            producer = group.create_task(run.produce(reader))
            stop_wait = group.create_task(run.stop.wait())
            await asyncio.wait({producer, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not run.stop.is_set():
                idle = group.create_task(run.idle.wait())
                await asyncio.wait({idle, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
            if run.stop.is_set():
                run.submitter.stop()
                producer.cancel()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(run.idle.wait(), timeout=run.config.grace_seconds)
            stop_wait.cancel()
            await run.to_write.join()
        finally:
            for task in tasks:
                task.cancel()
    # Jobs still tracked after a stop keep their rows PENDING: resolve_pending reports them
    # as ABORTED, and the journal keeps their request_ids so a re-run re-attaches to them.


def result_outcome(stats: RunStats, run: _Run, stop: asyncio.Event) -> Outcome:
    if stats.unbalanced:
        return Outcome.LEDGER_MISMATCH
    if run.abort_reason is not None:
        return Outcome.ABORTED
    if stop.is_set():
        return Outcome.INTERRUPTED
    if stats.rows_failed:
        return Outcome.ROWS_FAILED
    return Outcome.COMPLETED


def check_meta(journal: Journal, layout: OutputLayout, model: str, dim: int, key_type: str) -> None:
    """Refuse to mix runs with different models or key types in one output."""
    wanted = {"model": model, "dim": str(dim), "key_type": key_type}
    for name, value in wanted.items():
        found = journal.meta(name)
        if found is not None and found != value:
            raise ConfigError(
                f"output {layout.output}: an earlier run wrote {name}={found}, this run has "
                f"{name}={value}; use another --output, or --fresh to start over"
            )
    journal.set_meta(wanted)


def remove_outputs(layout: OutputLayout) -> None:
    """With --fresh: remove the parts and the output file of earlier runs."""
    for part in committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []:
        part.unlink()
    if layout.single_file:
        layout.output.unlink(missing_ok=True)


def embed_sync(config: RunConfig, *, progress: TextIO | None = None) -> RunResult:
    """Blocking convenience wrapper around :func:`embed`."""
    return event_loop.run(embed(config, progress=progress))
