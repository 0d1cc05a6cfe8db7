"""``batch-embed plan``: what a run would pay, computed without a single request to the API.

The plan reads the inputs as the run would, and asks the same questions of the same record:
a snapshot of the journal (or, with none, the output re-read as the record) is admitted the
rows exactly as :meth:`Journal.admit_rows` admits them in a run, and each text needing a
vector is judged by :func:`routing.text_action`, the engine's own decision. So on a healthy
service the run that follows makes exactly ``to_submit`` submits. Nothing of the output or its
journal is written: the snapshot lives in a temporary directory.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import RunConfig
from .journal import Journal, RowVerdict
from .layout import layout_for
from .output_index import check_meta, reconcile
from .pipeline import open_inputs
from .records import ErrorKind, ErrorRecord, Row
from .routing import TextAction, text_action
from .tokens import encode
from .write_failures import write_failure

READS_PER_TEXT = 2.1
"""Status polls and result fetches per text on a healthy service (measured: 3.1 requests a
text in all, ``benchmarks/long_tail.py``); what the time estimate assumes."""


@dataclass(slots=True)
class Plan:
    """What ``run`` would do with the same inputs, output and settings."""

    rows_read: int = 0
    new: int = 0
    """Rows whose key no run has committed."""
    changed: int = 0
    """Rows whose key was committed with another text (re-embedded; the old vector replaced)."""
    unchanged: int = 0
    """Rows committed with this very text (nothing to do)."""
    gone: int = 0
    """Keys the output has that the input no longer has (kept unless ``--prune``)."""
    folded: int = 0
    """Rows needing a vector whose text another row has, or the output already holds."""
    to_submit: int = 0
    """Paid calls the run would make on a healthy service."""
    tokens: int = 0
    """cl100k tokens of the texts to submit."""
    too_long: int = 0
    """Rows over the model's token limit (failed; cut with ``--truncate``)."""
    bad_rows: int = 0
    """Rows that cannot be embedded (bad JSON, a missing text or id, too long, ...)."""
    reattach: int = 0
    """Texts with a job still inside its hour: polled, not paid again."""
    known_failed: int = 0
    """Rows whose text failed for its content before (not retried without --retry-failed)."""
    repeated_ids: int = 0
    duplicate_ids: int = 0
    key: str = ""
    rebuilt_from_output: int | None = None
    seconds: float = 0.0
    """The time the run needs at the configured budget, on a healthy service."""
    price_per_call: float | None = None
    cost: float | None = None
    submit_cap: int | None = None

    def as_dict(self) -> dict[str, object]:
        """The plan as plain data (``--summary-json``)."""
        return asdict(self)

    def lines(self, output: Path | str, rpm: float) -> list[str]:
        """The plan in words, as ``plan`` prints it."""
        lines = [
            f"plan for {output} (no request was made):",
            f"rows read {self.rows_read}: new {self.new}, changed {self.changed}, "
            f"unchanged {self.unchanged}; gone {self.gone}",
            f"identical texts folded {self.folded}; jobs to re-attach {self.reattach}; "
            f"failed before for their content {self.known_failed}; bad rows {self.bad_rows} "
            f"(over the token limit {self.too_long})",
            f"to_submit {self.to_submit} paid calls, {self.tokens} tokens (cl100k)",
            f"time at the budget ({rpm:g} submits/min): {_duration(self.seconds)}"
            + (
                f"; cost {self.cost:.6g} at {self.price_per_call:g} per call"
                if self.cost is not None and self.price_per_call is not None
                else ""
            ),
            f"keys: {self.key}",
        ]
        if self.submit_cap is not None and self.to_submit > self.submit_cap:
            runs = math.ceil(self.to_submit / self.submit_cap) if self.submit_cap else math.inf
            lines.append(
                f"the cap of {self.submit_cap} submits stops each run there: {runs} runs to finish"
            )
        return lines


def make_plan(config: RunConfig) -> Plan:
    """Plan a run of ``config``; raises InputError and ConfigError as the run would."""
    layout = layout_for(config.output, config.errors, config.state_dir)
    spec, _, reader = open_inputs(config, layout)
    plan = Plan(
        key=reader.key_source,
        price_per_call=config.price_per_call,
        submit_cap=config.submit_cap,
    )
    with tempfile.TemporaryDirectory(prefix="batch-embed-plan-") as scratch:
        path = Path(scratch) / "journal.sqlite"
        try:
            if layout.journal.exists() and not config.fresh:
                _snapshot(layout.journal, path)
            with Journal.open(path) as journal:
                if not config.fresh:
                    check_meta(journal, layout, spec.slug, spec.output_dim, reader.key_type)
                    plan.rebuilt_from_output = reconcile(journal, layout)
                _admit(plan, config, reader.batches(), journal)
                plan.gone = journal.vanished_rows()
        except Exception as exc:  # the plan's scratch copy of the journal could not be written
            failure = write_failure(exc, path)
            if failure is None:
                raise
            raise failure from exc
    plan.seconds = _seconds(plan, config)
    if config.price_per_call is not None:
        plan.cost = plan.to_submit * config.price_per_call
    return plan


def _admit(
    plan: Plan, config: RunConfig, batches: Iterable[list[Row | ErrorRecord]], journal: Journal
) -> None:
    """Count what each row needs, in reading order, as the engine would route it."""
    planned: set[int] = set()  # 64-bit hash prefixes: ~60 bytes a distinct text
    usable_for = config.retention - config.retention_margin
    for batch in batches:
        rows = []
        for item in batch:
            plan.rows_read += 1
            if isinstance(item, ErrorRecord):
                plan.bad_rows += 1
                plan.too_long += item.kind is ErrorKind.TOO_LONG
            else:
                rows.append(item)
        now = time.time()
        for row, verdict in zip(rows, journal.admit_rows(rows), strict=True):
            if verdict is RowVerdict.DONE:
                plan.unchanged += 1
                continue
            if verdict is RowVerdict.REPEAT:
                plan.repeated_ids += 1
                continue
            if verdict is RowVerdict.CONFLICT:
                plan.duplicate_ids += 1
                continue
            plan.new += verdict is RowVerdict.NEW
            plan.changed += verdict is RowVerdict.CHANGED
            prefix = int(row.text_hash[:16], 16)
            if prefix in planned:
                plan.folded += 1
                continue
            planned.add(prefix)
            action = text_action(
                journal.text(row.text_hash),
                now=now,
                usable_for=usable_for,
                retry_failed=config.retry_failed,
            )
            if action is TextAction.COPY:
                plan.folded += 1
            elif action is TextAction.FAIL:
                plan.known_failed += 1
            elif action is TextAction.REATTACH:
                plan.reattach += 1
            else:
                plan.to_submit += 1
                plan.tokens += len(encode(row.text))


def _seconds(plan: Plan, config: RunConfig) -> float:
    """The run's time at its budget: submits at ``rpm``, polls and fetches at ``read_rate``
    (or, with a shared limit, everything at ``rpm``)."""
    reads = (plan.to_submit + plan.reattach) * READS_PER_TEXT
    if config.shared_limit:
        return (plan.to_submit + reads) / config.submit_rate
    return max(plan.to_submit / config.submit_rate, reads / config.read_rate)


def _snapshot(source: Path, dest: Path) -> None:
    """Copy a journal, consistent, without its lock (a run may be writing it meanwhile)."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
