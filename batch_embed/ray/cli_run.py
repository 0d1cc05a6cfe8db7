"""``batch-embed run --engine ray``: the inputs read, embedded and written through Ray Data.

For corpora too big for one disk: the files are read by the cluster (one task per file,
running the local engine's reader), embedded by :func:`~batch_embed.ray.embed_dataset`
and written by the cluster (``write_parquet``) into a directory or object-storage prefix,
one subdirectory per run (the rules that keep every row once are in
:mod:`batch_embed.ray.cli_outputs`). The one-machine flags that this engine cannot honour
are refused (:data:`REFUSED`) before anything starts.

Steps, in order: resolve and check the inputs (:mod:`~batch_embed.ray.cli_inputs`, before
any paid call); take the output's lock and read the jobs a killed run left in the journal
(:mod:`~batch_embed.ray.job_journal`); read what the output already holds; start Ray
(quiet: warnings only, no progress bars); the id pass (:mod:`~batch_embed.ray.duplicates`:
ids used twice, every file read through, still before any paid call); one streaming pass
of read -> settle duplicate ids -> drop what is done -> embed (re-attaching to the
journaled jobs) -> errors aside -> write, the journal following every submit; then the
summary. ``ray.init()`` starts a local instance unless ``--ray-address`` names a cluster
(``auto``: the one this machine belongs to).
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import ray

from ..errors import BatchEmbedError, ConfigError, InputError
from ..inputs import InputFile, resolve_inputs
from ..layout import state_dir_of
from ..log import Log
from ..models import model_spec
from ..overlap import OwnPaths
from ..pipeline import Outcome
from ..reader import ReaderConfig
from ..spending import cap_from
from ..write_failures import writing
from .calls import RunAborted
from .cli_inputs import ID, TEXT, TEXT_HASH, Fields, preflight, read_inputs
from .cli_outputs import (
    ERROR_COLUMNS,
    Known,
    Store,
    errors_beside,
    files_of,
    keys_of,
    latest_errors,
    new_run,
    pending,
    prune_superseded,
    read_index,
    remove_earlier_runs,
    rows_in,
    split,
    write_copies,
)
from .dataset import embed_dataset
from .duplicates import find_duplicates, mark_duplicates
from .job_journal import JobJournal, JournalPump, registry_fetch
from .registry import find_registry

REFUSED: Mapping[str, str] = {
    "fresh": "it cannot forget an output: remove the output directory instead",
    "shared-limit": "its budget actor keeps submits and reads apart",
    "timeout": "its workers use the default request timeout",
    "max-in-flight": "the size of the actor pool (--workers) bounds what is in flight",
    "yes": "it makes no credit check",
    "prune": "it keeps the rows of keys the input no longer has",
    "log-every": "it shows no progress view",
    "rows-per-part": "Ray Data sizes the files",
    "max-answer-bytes": "its workers use the default answer cap",
}
"""The run flags the ray engine cannot honour -> why; given, they are a usage error."""


READ_BATCH_ROWS = 2048
"""Rows per batch of a read task (the Reader's batch: one block of the read stream)."""


QUIET_LOGGERS = (
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
    # These log a failed task's whole traceback, then raise it to us: we say it once.
    "ray.data._internal.execution.streaming_executor_state",
    "ray.data.exceptions",
)


def refuse_flags(sources: Mapping[str, str]) -> None:
    """ConfigError naming the first flag of :data:`REFUSED` that was set (flag, env, file)."""
    for name, why in REFUSED.items():
        if sources.get(name, "default") != "default":
            raise ConfigError(f"--{name} does not apply to --engine ray: {why}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Api:
    """Where the API is and what it allows."""

    base_url: str
    api_key: str
    rpm: float
    read_rate: float


def run(args: argparse.Namespace, api: Api, log: Log) -> Outcome:
    """One run on Ray (see the module doc); the outcome the CLI maps to its exit code."""
    started = time.monotonic()
    output = Store.at(args.output)
    errors = Store.at(
        args.errors if args.errors is not None else errors_beside(args.output), "--errors"
    )
    if output.shown() == errors.shown() or output.path() == errors.path():
        raise ConfigError("--errors must not be the output directory")
    state = state_dir_of(args.output, args.state_dir)
    stores = ((output, "the output"), (errors, "the errors"))
    own = OwnPaths.directories(
        [(Path(s.root), what) for s, what in stores if s.local]
        + [(state, "the journal directory")],
        [(s.name, what) for s, what in stores if not s.local],
    )
    files = resolve_inputs(args.inputs, own)
    spec = model_spec(args.model, args.dimensions)
    reading = ReaderConfig(
        text_field=args.text_field,
        id_field=args.id_field,
        truncate=args.truncate,
        batch_size=READ_BATCH_ROWS,
        model=spec,
    )
    fields = preflight(files, reading)
    with JobJournal.open(state) as journal:
        outcome, run_name, paid = _embed(args, api, log, files, fields, output, errors, journal)
        if outcome is not Outcome.ABORTED:
            journal.clear()  # every job of it is written
    return _report(args, log, outcome, output, errors, run_name, started, paid)


def _embed(
    args: argparse.Namespace,
    api: Api,
    log: Log,
    files: Sequence[InputFile],
    fields: Fields,
    output: Store,
    errors: Store,
    journal: JobJournal,
) -> tuple[Outcome, str, Paid]:
    """Under the output's lock: what is done, the pass on Ray, the earlier runs' leftovers."""
    vectors = read_index(output, (ID, TEXT_HASH))
    for name in vectors.removed:
        log.warning(f"removed {name}: not a readable Parquet file (a write killed midway)")
    vectors, superseded = prune_superseded(output, vectors)
    if superseded:
        log.info(f"removed {superseded} rows whose id a later run embedded again")
    done = keys_of(vectors.table[ID], vectors.table[TEXT_HASH])
    earlier_errors = read_index(errors, ERROR_COLUMNS)
    kept = latest_errors(earlier_errors, done, retry_failed=args.retry_failed)
    resume = journal.resumable(time.time())
    if resume:
        log.info(f"re-attaching to {len(resume)} jobs an earlier run submitted", event="resume")
    run_name = new_run()
    _start_ray(args.ray_address)
    try:
        known = ray.put(Known(done, kept, pc.unique(vectors.table[TEXT_HASH].combine_chunks())))
        rows = read_inputs(files, fields)
        try:
            duplicates, copies = find_duplicates(rows, files, fields.config.id_field, known)
        except Exception as err:  # a file the preflight did not see, or one broken midway
            bad = _cause(err, InputError)
            if bad is None:
                raise
            raise bad from None
        if len(duplicates.conflicts):
            log.warning(
                f"{len(duplicates.conflicts)} rows reuse an earlier row's id with another "
                "text: not embedded (see the errors)",
                event="duplicate_ids",
            )
        ds = rows.map_batches(
            functools.partial(mark_duplicates, duplicates=ray.put(duplicates)),
            batch_format="pyarrow",
        ).map_batches(functools.partial(pending, known=known), batch_format="pyarrow")
        ds = embed_dataset(
            ds,
            text_column=TEXT,
            id_column=ID,
            model=model_spec(args.model, args.dimensions).slug,
            dimensions=args.dimensions,
            rpm=api.rpm,
            read_rate=api.read_rate,
            base_url=api.base_url,
            api_key=api.api_key,
            workers=args.workers,
            max_resubmits=args.max_resubmits,
            max_submits=cap_from(args.max_submits, args.max_cost, args.price_per_call),
            allow_insecure_http=args.allow_insecure_http,
            run_id=run_name,
            resume=resume,
        )
        ds = ds.map_batches(
            functools.partial(split, known=known, errors=errors, run=run_name),
            batch_format="pyarrow",
        )
        log.info(
            f"embedding {len(files)} input files on Ray into {output.shown(run_name)} "
            f"({len(done)} rows already in the output)",
            event="start",
            output=output.name,
            run=run_name,
        )
        registry = find_registry(run_name)
        pump = JournalPump(journal, registry_fetch(registry))
        pump.start()
        try:
            ds.write_parquet(output.path(run_name), filesystem=output.fs)
        except Exception as err:
            bad = _cause(err, InputError)  # a file changed since the id pass
            if bad is not None:
                raise bad from None
            aborted = _cause(err, RunAborted)
            if aborted is None:
                raise
            # Ray appends its retry advice to the message: the first line is ours.
            log.error(str(aborted).splitlines()[0], event="aborted")
            return Outcome.ABORTED, run_name, _paid(registry)
        finally:
            pump.stop()
        paid = _paid(registry)
        paid = replace(paid, copied=write_copies(output, run_name, copies, files_of(vectors)))
        if paid.copied:
            log.info(
                f"copied {paid.copied} vectors of texts the output holds under other ids "
                "(not paid)",
                event="copied",
            )
    finally:
        ray.shutdown()
    remove_earlier_runs(errors, run_name)
    prune_superseded(output, read_index(output, (ID, TEXT_HASH)))
    if paid.not_submitted:
        return Outcome.CAPPED, run_name, paid
    failed = rows_in(errors, run_name)
    return (Outcome.ROWS_FAILED if failed else Outcome.COMPLETED), run_name, paid


@dataclass(frozen=True, slots=True)
class Paid:
    """What the run's registry granted: submits (paid calls), and texts the cap kept back;
    and the rows it copied from the output instead of paying."""

    submits: int
    not_submitted: int
    copied: int = 0


def _paid(registry: Any) -> Paid:
    stats = ray.get(registry.stats.remote())
    return Paid(int(stats["submits_granted"]), int(stats["capped"]))


def _report(
    args: argparse.Namespace,
    log: Log,
    outcome: Outcome,
    output: Store,
    errors: Store,
    run_name: str,
    started: float,
    paid: Paid,
) -> Outcome:
    """The summary lines (one ``summary`` event in JSON) and ``--summary-json``."""
    figures = {
        "outcome": outcome.value,
        "paid_submits": paid.submits,
        "texts_not_submitted": paid.not_submitted,
        "rows_copied": paid.copied,
        "rows_embedded": rows_in(output, run_name),
        "rows_failed": rows_in(errors, run_name),
        "rows_in_output": read_index(output, (ID,)).table.num_rows,
        "wall_seconds": round(time.monotonic() - started, 1),
        "run": run_name,
    }
    if log.json:
        log.info(
            f"run {outcome.value}",
            event="summary",
            output=output.name,
            errors=errors.name,
            **figures,
        )
    else:
        log.info(
            f"rows embedded {figures['rows_embedded']}, failed {figures['rows_failed']}; "
            f"paid submits {paid.submits}; the output holds {figures['rows_in_output']} rows; "
            f"wall {figures['wall_seconds']} s"
        )
        log.info(f"output {output.name}; errors {errors.name}")
    if outcome is Outcome.CAPPED:
        log.info(
            f"stopped at the submit cap: {paid.not_submitted} texts not submitted; run the "
            "same command again to continue",
            event="stopped",
        )
    if args.summary_json is not None:
        with writing(args.summary_json):
            args.summary_json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return outcome


def _cause(err: BaseException, kind: type[BatchEmbedError]) -> BatchEmbedError | None:
    """The ``kind`` exception ``err`` is or wraps (Ray wraps a worker's exception)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            inner = getattr(current, "cause", None)  # RayTaskError(kind) holds the original
            return inner if isinstance(inner, kind) else current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


def _start_ray(address: str | None) -> None:
    """``ray.init`` with warnings only on the terminal and Ray Data's progress bars off."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    # A worker's RunAborted reaches the driver as itself, not as a UserCodeException that
    # keeps only its text (the exit code says the API stopped the run).
    context.raise_original_map_exception = True
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Said on every run, and not the user's concern: "Token authentication is enabled"
    # (a local instance's default), "Progress bars disabled" (we did); and see below.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # A corpus of one small file is one block: fewer than --workers actors have work.
    warnings.filterwarnings(
        "ignore", message="The minimum number of concurrent actors", category=UserWarning
    )
    if address is None:
        ray.init(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
