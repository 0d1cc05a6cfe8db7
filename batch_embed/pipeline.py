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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from . import loop as event_loop
from .client import SegmindClient, Timeouts
from .config import RunConfig
from .engine import Engine
from .error_sink import ErrorSink
from .inputs import InputFile, resolve_inputs
from .journal import Journal
from .layout import OutputLayout, layout_for
from .log import Log
from .models import ModelSpec
from .output_copy import resolve_pending
from .output_index import (
    check_meta,
    check_state_owner,
    drop_rows,
    finish_drops,
    publish_staged,
    reconcile,
    remove_outputs,
)
from .output_store import check_writable
from .overlap import OwnPaths
from .progress import DEFAULT_LOG_EVERY, Progress, estimate_rows
from .reader import Reader, ReaderConfig
from .records import ErrorKind
from .stats import RunStats
from .write_failures import write_failure
from .writer import PartWriter, finalize_single_file


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
    CAPPED = "capped"
    """The run stopped at its submit cap; what was collected is written; run again."""
    LEDGER_MISMATCH = "ledger_mismatch"
    """Rows read != embedded + failed + skipped: a bug, reported loudly."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did: how it ended, its counters, and where its files are."""

    outcome: Outcome
    stats: RunStats
    layout: OutputLayout
    reason: str | None = None


async def embed(
    config: RunConfig,
    *,
    stop: asyncio.Event | None = None,
    progress: TextIO | Log | None = None,
    before_paying: Callable[[], Awaitable[None]] | None = None,
    log_every: float = DEFAULT_LOG_EVERY,
) -> RunResult:
    """Embed every row of the inputs into the output; see the module doc.

    ``progress`` is where the progress view goes (a stream, or the CLI's :class:`Log`), one
    line every ``log_every`` seconds when it is not a terminal. ``before_paying`` runs once
    the inputs, the output and the journal have been checked, before the first request:
    the CLI's credit check, which may refuse the run.

    Raises InputError (a bad input file, before anything is submitted), ConfigError and
    JournalLocked, and WriteFailed (a file of the run could not be written: the run stopped
    at once, keeping what it had committed). Everything that happens to rows is in the result
    and the errors output.
    """
    layout = layout_for(config.output, config.errors, config.state_dir)
    try:
        if progress is not None and not isinstance(progress, Log):
            progress = Log(stream=progress)
        return await _embed(config, layout, stop, progress, before_paying, log_every)
    except BaseException as exc:
        failure = write_failure(exc, layout.journal)
        if failure is None:
            raise
        raise failure from exc


async def _embed(
    config: RunConfig,
    layout: OutputLayout,
    stop: asyncio.Event | None,
    progress: Log | None,
    before_paying: Callable[[], Awaitable[None]] | None,
    log_every: float,
) -> RunResult:
    spec, files, reader = open_inputs(config, layout)
    stats = RunStats(started=time.monotonic())
    stop = stop or asyncio.Event()
    client = SegmindClient(
        api_key=config.api_key,
        base_url=config.base_url,
        model=spec,
        max_connections=min(512, 2 * config.max_in_flight + 8),
        allow_insecure_http=config.allow_insecure_http,
        max_answer_bytes=config.max_answer_bytes,
        timeouts=Timeouts(
            total=config.request_timeout,
            connect=min(10.0, config.request_timeout),
            read=config.request_timeout,
        ),
    )
    stats.key_source, stats.derived_keys = reader.key_source, reader.id_field is None
    stats.submit_cap = config.submit_cap
    for target in layout.remote_targets():
        await asyncio.to_thread(check_writable, target)
    with Journal.open(layout.journal, fresh=config.fresh) as journal:
        if config.fresh:
            remove_outputs(layout)
        publish_staged(layout)  # parts a killed run committed here but never published
        check_meta(journal, layout, spec.slug, spec.output_dim, reader.key_type)
        if config.state_dir is not None or layout.is_remote:
            check_state_owner(journal, layout)
        # On the loop, not in a thread: a cancelled run must not close the journal under it.
        finish_drops(journal, layout)  # a rewrite an earlier crash cut short
        stats.rebuilt_rows = reconcile(journal, layout)
        if before_paying is not None:
            await before_paying()
        with (
            ErrorSink(layout.errors, mode="fresh") as sink,
            PartWriter(
                layout.parts_dir,
                model=spec,
                key_type=reader.key_type,
                rows_per_part=config.rows_per_part,
                published=layout.published,
            ) as writer,
        ):
            async with client:
                run = Engine(
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
                        log=progress,
                        expected_rows=estimate_rows(files),
                        log_every=log_every,
                    )
                    view = asyncio.create_task(reporter.run())
                try:
                    await drive(run, reader)
                finally:
                    if view is not None:
                        view.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await view
            await resolve_pending(run)
            await asyncio.to_thread(writer.close)
            if run.read_all:
                stats.vanished_rows = journal.vanished_rows()
                if config.prune:
                    stats.pruned_rows = journal.mark_gone_for_pruning()
            drops = journal.superseded()
            if drops:
                journal.finish_drops(await asyncio.to_thread(drop_rows, layout, drops))
        if layout.final is not None:
            await asyncio.to_thread(finalize_single_file, layout.parts_dir, layout.final)
        if layout.errors_upload is not None:
            await asyncio.to_thread(layout.errors_upload.upload, layout.errors)
        for source, file_stats in reader.stats.items():
            stats.truncated += file_stats.truncated
            stats.ledger(source)
        stats.finished = time.monotonic()
        stats.capped = run.budget.refused
        outcome = result_outcome(stats, run, stop)
        journal.finish_run(outcome.value, stats.submits_accepted)
    reason = run.abort_reason
    if reason is not None:
        reason = f"{reason}; {rows_left(stats, files)}"
    return RunResult(outcome, stats, layout, reason)


def open_inputs(
    config: RunConfig, layout: OutputLayout
) -> tuple[ModelSpec, list[InputFile], Reader]:
    """Resolve and preflight the inputs of a run (raises InputError before anything is paid).

    The run's own paths (``layout``) are refused as inputs and left out of input directories.
    """
    spec = config.spec
    files = resolve_inputs(config.inputs, OwnPaths.of(layout))
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
    return spec, files, reader


def rows_left(stats: RunStats, files: list[InputFile]) -> str:
    """How many rows an aborted run leaves to embed (estimated for plain JSONL)."""
    left = stats.errors_by_kind.get(ErrorKind.ABORTED.value, 0)
    estimate = estimate_rows(files)
    if estimate is None:
        return f"{left} rows read were not embedded, plus the rows not read yet"
    left += max(0, estimate - stats.rows_read)
    exact = all(file.format == "parquet" for file in files)
    return f"{'' if exact else 'about '}{left} rows are left to embed"


async def drive(run: Engine, reader: Reader) -> None:
    """Run the stages until every admitted job is finished (or the grace period ends)."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(run.submitter.run()),
            group.create_task(run.poller.run()),
            group.create_task(run.output.run()),
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
            await run.output.queue.join()
        finally:
            for task in tasks:
                task.cancel()
    # Jobs still tracked after a stop keep their rows PENDING: resolve_pending reports them
    # as ABORTED, and the journal keeps their request_ids so a re-run re-attaches to them.


def result_outcome(stats: RunStats, run: Engine, stop: asyncio.Event) -> Outcome:
    if stats.unbalanced:
        return Outcome.LEDGER_MISMATCH
    if run.abort_reason is not None:
        return Outcome.ABORTED
    if stop.is_set():
        return Outcome.INTERRUPTED
    if run.budget.refused:
        return Outcome.CAPPED
    if stats.rows_failed:
        return Outcome.ROWS_FAILED
    return Outcome.COMPLETED


def embed_sync(config: RunConfig, *, progress: TextIO | None = None) -> RunResult:
    """Blocking convenience wrapper around :func:`embed`."""
    return event_loop.run(embed(config, progress=progress))
