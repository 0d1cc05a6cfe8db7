"""``batch-embed status OUT``: what a run has done, read without taking the run's lock.

The journal is opened read-only (SQLite ``mode=ro``) and the output's footers are read;
nothing is written, so it works while a run holds the lock, and on a finished or killed
run. A run that started and has no end is "running" when the process that holds the
lock is alive, and "killed" (or crashed) when it is not.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import DEFAULT_RETENTION
from .errors import ConfigError
from .journal_schema import RowState, TextState
from .layout import OutputLayout, Target, layout_for
from .output_index import output_files, output_rows


@dataclass(slots=True)
class LastRun:
    """The newest run the journal records."""

    run: int
    started: str
    ended: str | None
    outcome: str
    """``completed``, ``rows_failed``, ..., or ``running`` / ``killed`` for a run with no end."""
    pid: int | None
    paid_calls: int | None


@dataclass(slots=True)
class Status:
    """Everything ``status`` reports (its ``--json`` keys)."""

    output: str
    rows_committed: int = 0
    rows_pending: int = 0
    rows_failed: int = 0
    output_rows: int = 0
    texts_done: int = 0
    texts_failed: int = 0
    in_flight: int = 0
    """Texts submitted whose vector is not written yet."""
    in_flight_unrecorded: int = 0
    """Texts whose submit was sent but whose request_id was never recorded."""
    minutes_left_min: float | None = None
    minutes_left_max: float | None = None
    in_flight_expired: int = 0
    """Of those in flight, submitted more than an hour ago: their results are gone."""
    paid_calls: int = 0
    runs: int = 0
    last_run: LastRun | None = None
    model: str | None = None
    dim: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The status for people, a few lines."""
        lines = [
            f"output {self.output}: {self.output_rows} rows in the output files"
            + (f" (model {self.model}, {self.dim} dims)" if self.model else ""),
            f"rows: committed {self.rows_committed}, pending {self.rows_pending}, "
            f"failed {self.rows_failed}",
            f"paid calls so far {self.paid_calls}; texts done {self.texts_done}, "
            f"failed {self.texts_failed}",
        ]
        if self.in_flight or self.in_flight_unrecorded:
            left = ""
            if self.minutes_left_min is not None:
                left = (
                    f", {self.minutes_left_min:.0f} to {self.minutes_left_max:.0f} min left "
                    "of their hour"
                )
            lines.append(
                f"in flight {self.in_flight} texts{left}"
                + (f"; {self.in_flight_expired} past their hour" if self.in_flight_expired else "")
                + (
                    f"; {self.in_flight_unrecorded} sent with no request_id recorded"
                    if self.in_flight_unrecorded
                    else ""
                )
            )
        if self.last_run is not None:
            run = self.last_run
            end = f", ended {run.ended}" if run.ended else ""
            paid = f", {run.paid_calls} paid calls" if run.paid_calls is not None else ""
            pid = f" (pid {run.pid})" if run.outcome == "running" and run.pid else ""
            lines.append(
                f"last run #{run.run}: started {run.started}{end}{paid}: {run.outcome}{pid}"
            )
        lines.extend(self.notes)
        return lines


def read_status(
    output: Target,
    errors: Target | None = None,
    *,
    state_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
    alive: Callable[[int], bool] | None = None,
) -> Status:
    """The status of ``output``; ConfigError when it has neither journal nor output."""
    layout = layout_for(output, errors, state_dir)
    has_output = bool(output_files(layout))
    if not layout.journal.exists() and not has_output:
        raise ConfigError(f"{output}: no output and no journal here; nothing has run on it")
    status = Status(output=str(output))
    if has_output:
        status.output_rows = output_rows(layout)
    if not layout.journal.exists():
        status.notes.append(
            "no journal (deleted, or the output was copied): the output's rows only"
        )
        return status
    with _read_only(layout.journal) as db:
        _rows(db, status)
        _texts(db, status, clock())
        _runs(db, status, layout, alive or _pid_alive)
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        status.model, status.dim = meta.get("model"), meta.get("dim")
    return status


class _read_only:
    """A read-only connection that writes nothing.

    With a write-ahead log beside the database (a run is live, or was killed), ``mode=ro``
    reads through it, as a consistent snapshot. Without one (the last run closed cleanly),
    ``immutable=1`` keeps SQLite from creating the ``-wal`` and ``-shm`` files a reader of
    a WAL database would otherwise make.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        live = Path(f"{self.path}-wal").exists()
        uri = f"file:{self.path.resolve()}?mode=ro" + ("" if live else "&immutable=1")
        self.conn = sqlite3.connect(uri, uri=True, timeout=5)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _rows(db: sqlite3.Connection, status: Status) -> None:
    counts = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
    status.rows_committed = counts.get(RowState.COMMITTED, 0)
    status.rows_pending = counts.get(RowState.PENDING, 0)
    status.rows_failed = counts.get(RowState.FAILED, 0)


def _texts(db: sqlite3.Connection, status: Status, now: float) -> None:
    counts = dict(db.execute("SELECT state, count(*) FROM texts GROUP BY state").fetchall())
    status.texts_done = counts.get(TextState.DONE, 0)
    status.texts_failed = counts.get(TextState.FAILED, 0)
    status.in_flight_unrecorded = counts.get(TextState.INTENT, 0)
    status.paid_calls = int(db.execute("SELECT coalesce(sum(submits), 0) FROM texts").fetchone()[0])
    row = db.execute(
        "SELECT count(*), min(submitted_at), max(submitted_at), "
        "sum(submitted_at <= ?) FROM texts WHERE state = ? AND request_id IS NOT NULL",
        (now - DEFAULT_RETENTION, TextState.SUBMITTED),
    ).fetchone()
    status.in_flight = int(row[0])
    if status.in_flight:
        status.minutes_left_min = max(0.0, (row[1] + DEFAULT_RETENTION - now) / 60)
        status.minutes_left_max = max(0.0, (row[2] + DEFAULT_RETENTION - now) / 60)
        status.in_flight_expired = int(row[3] or 0)


def _runs(
    db: sqlite3.Connection, status: Status, layout: OutputLayout, alive: Callable[[int], bool]
) -> None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "runs" not in tables:  # a journal written before runs were recorded
        found = db.execute("SELECT value FROM meta WHERE name='run'").fetchone()
        status.runs = int(found[0]) if found else 0
        return
    status.runs = int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    last = db.execute(
        "SELECT run, started, ended, outcome, pid, paid FROM runs ORDER BY run DESC LIMIT 1"
    ).fetchone()
    if last is None:
        return
    run, started, ended, outcome, pid, paid = last
    if outcome is None:
        outcome = "running" if pid is not None and alive(pid) and _holds(layout, pid) else "killed"
    status.last_run = LastRun(
        run=run,
        started=_when(started),
        ended=None if ended is None else _when(ended),
        outcome=outcome,
        pid=pid,
        paid_calls=paid,
    )


def _holds(layout: OutputLayout, pid: int) -> bool:
    """Whether the lock file names ``pid`` (a run writes its pid there when it locks)."""
    lock = layout.journal.with_name(layout.journal.name + ".lock")
    try:
        return lock.read_text().strip() == str(pid)
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
