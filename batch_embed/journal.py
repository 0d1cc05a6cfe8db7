"""The run's durable memory: one SQLite database (WAL) beside the output.

It is the index that keeps memory flat however large the corpus (which ids and texts were
seen, which texts have a job, which vectors are safely in a committed part) and what a
re-run resumes from. Two tables:

``rows``   one per row key: the text's hash, the run that last saw it, its state
           (PENDING: no vector written yet; COMMITTED: its vector is in a committed part;
           FAILED: its error record is written).
``texts``  one per distinct text hash: the job's state (INTENT written before the POST,
           SUBMITTED once the request_id is known, DONE once its vector is committed,
           FAILED), the request_id, the submission time (wall clock), the number of submits
           (each one a paid call; ``forgiven`` of them were before a ``--retry-failed``
           gave the text a new allowance of resubmits), and the error of a failed text.
``runs``   one per run: its start and end (wall clock), its outcome and its paid calls; a
           run with no end was killed, or is running (``batch-embed status`` tells which).
``superseded`` / ``pruned``  keys whose old output rows must go (their text changed; they
           left the input and ``--prune`` asked); kept until the output is rewritten, so a
           crash in between is finished by the next run.

A lock (``flock`` on a file beside the database, released by the kernel when the process
dies) keeps two runs off the same output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from .journal_schema import (
    SCHEMA,
    SCHEMA_VERSION,
    TEXT_COLUMNS,
    RowState,
    RowVerdict,
    TextRecord,
    TextState,
)
from .records import Row, RowKey
from .run_lock import lock_beside, release_lock, take_lock

__all__ = ["Journal", "RowState", "RowVerdict", "TextRecord", "TextState", "wall_clock"]


class Journal:
    """The SQLite journal of one output; open with :meth:`open`, close with ``with``."""

    def __init__(self, conn: sqlite3.Connection, lock_fd: int, path: Path) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self.path = path
        self.run = 0
        self._submitted: dict[str, tuple[str, float]] = {}
        """Request_ids answered but not yet written: digest -> (request_id, submitted_at)."""

    @classmethod
    def open(cls, path: Path, *, fresh: bool = False) -> Journal:
        """Lock and open (or create) the journal at ``path``; ``fresh`` forgets everything.

        Raises JournalLocked when another live process holds the lock.
        """
        fd = take_lock(lock_beside(path))
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(texts)")}
        if "forgiven" not in columns:  # a journal of an earlier version
            conn.execute("ALTER TABLE texts ADD COLUMN forgiven INTEGER NOT NULL DEFAULT 0")
        journal = cls(conn, fd, path)
        journal._start_run()
        return journal

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the lock; idempotent."""
        if self._lock_fd < 0:
            return
        try:
            self.flush()
        finally:  # the lock is released even when the last write failed
            self._conn.close()
            release_lock(self._lock_fd)
            self._lock_fd = -1

    def _start_run(self) -> None:
        with self._tx():
            found = self._conn.execute("SELECT value FROM meta WHERE name='run'").fetchone()
            self.run = int(found[0]) + 1 if found else 1
            self._set_meta("run", str(self.run))
            self._set_meta("schema", SCHEMA_VERSION)
            self._conn.execute(
                "INSERT OR REPLACE INTO runs(run, started, pid) VALUES(?, ?, ?)",
                (self.run, wall_clock(), os.getpid()),
            )

    def finish_run(self, outcome: str, paid: int) -> None:
        """Write how this run ended and what it paid (``status`` reads it)."""
        with self._tx():
            self._conn.execute(
                "UPDATE runs SET ended=?, outcome=?, paid=? WHERE run=?",
                (wall_clock(), outcome, paid, self.run),
            )

    # -- meta ------------------------------------------------------------------------------

    def _set_meta(self, name: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value),
        )

    def meta(self, name: str) -> str | None:
        """The stored value of a setting (model, dim, key type), or None."""
        found = self._conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if found is None else str(found[0])

    def set_meta(self, values: dict[str, str]) -> None:
        """Store settings that a later run must agree with."""
        with self._tx():
            for name, value in values.items():
                self._set_meta(name, value)

    # -- rows ------------------------------------------------------------------------------

    def admit_rows(self, rows: Sequence[Row]) -> list[RowVerdict]:
        """Decide, for each row in reading order, what to do; record the new ones."""
        verdicts: list[RowVerdict] = []
        run = self.run
        select = "SELECT hash, run, state FROM rows WHERE key=?"
        upsert = (
            "INSERT INTO rows(key, hash, run, state, source, location) VALUES(?, ?, ?, 0, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET hash=excluded.hash, run=excluded.run, state=0, "
            "source=excluded.source, location=excluded.location"
        )
        with self._tx():
            cur = self._conn.cursor()
            for row in rows:
                key, digest = row.key, row.text_hash
                found = cur.execute(select, (key,)).fetchone()
                if found is None:
                    verdict = RowVerdict.NEW
                else:
                    old_hash, old_run, state = found
                    if old_run == run:
                        verdict = RowVerdict.REPEAT if old_hash == digest else RowVerdict.CONFLICT
                    elif old_hash != digest:
                        verdict = RowVerdict.CHANGED
                    elif state == RowState.COMMITTED:
                        verdict = RowVerdict.DONE
                        cur.execute("UPDATE rows SET run=? WHERE key=?", (run, key))
                    else:
                        verdict = RowVerdict.NEW
                if verdict in (RowVerdict.NEW, RowVerdict.CHANGED):
                    cur.execute(upsert, (key, digest, run, row.source, row.location))
                if verdict is RowVerdict.CHANGED:
                    cur.execute("INSERT OR IGNORE INTO superseded(key) VALUES(?)", (key,))
                verdicts.append(verdict)
        return verdicts

    def row_location(self, key: RowKey) -> str | None:
        """Where the row with this key was read (``<file>, line N``), or None."""
        found = self._conn.execute(
            "SELECT source, location FROM rows WHERE key=?", (key,)
        ).fetchone()
        return None if found is None else f"{found[0]}, {found[1]}"

    def mark_rows(self, keys: Iterable[RowKey], state: RowState) -> None:
        """Set the state of rows (COMMITTED after a part commit, FAILED once recorded)."""
        with self._tx():
            self._conn.executemany(
                "UPDATE rows SET state=? WHERE key=?", ((int(state), k) for k in keys)
            )

    def pending_rows(self) -> list[tuple[RowKey, str, str, str]]:
        """This run's rows still PENDING: ``(key, hash, source, location)``."""
        cur = self._conn.execute(
            "SELECT key, hash, source, location FROM rows WHERE run=? AND state=0", (self.run,)
        )
        return list(cur)

    def vanished_rows(self) -> int:
        """Rows known from earlier runs that this run's input no longer has (gone rows)."""
        found = self._conn.execute("SELECT count(*) FROM rows WHERE run<?", (self.run,)).fetchone()
        return int(found[0])

    def superseded(self) -> dict[RowKey, str | None]:
        """Keys whose old output rows must go: ``{key: hash to keep, or None to drop all}``.

        A key whose text changed keeps only its current hash's row; a pruned key keeps none.
        Kept across crashes until :meth:`finish_drops` after the output is rewritten.
        """
        cur = self._conn.execute(
            "SELECT s.key, r.hash FROM superseded s JOIN rows r ON r.key = s.key"
        )
        drops: dict[RowKey, str | None] = {key: digest for key, digest in cur}
        drops.update((key, None) for (key,) in self._conn.execute("SELECT key FROM pruned"))
        return drops

    def mark_gone_for_pruning(self) -> int:
        """Record every row earlier runs saw that this run's input no longer has as pruned."""
        with self._tx():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO pruned(key) SELECT key FROM rows WHERE run<?", (self.run,)
            )
            return cur.rowcount

    def finish_drops(self, dropped_hashes: Iterable[str]) -> None:
        """The output no longer holds the superseded and pruned rows: forget them.

        Pruned keys leave ``rows``; a text whose last committed row was dropped stops being
        DONE (a later row with that text is then embedded again, not copied from nowhere).
        """
        with self._tx():
            self._conn.execute("DELETE FROM rows WHERE key IN (SELECT key FROM pruned)")
            self._conn.execute("DELETE FROM pruned")
            self._conn.execute("DELETE FROM superseded")
            self._conn.executemany(
                "DELETE FROM texts WHERE hash=? AND state=2 AND NOT EXISTS "
                "(SELECT 1 FROM rows WHERE rows.hash=texts.hash AND rows.state=1)",
                ((digest,) for digest in set(dropped_hashes)),
            )

    # -- what the output holds -------------------------------------------------------------

    def committed_count(self) -> int:
        """Rows the journal records as committed to the output."""
        found = self._conn.execute("SELECT count(*) FROM rows WHERE state=1").fetchone()
        return int(found[0])

    def forget_committed(self) -> None:
        """Drop every committed row and done text (the output is re-read as the record)."""
        with self._tx():
            self._conn.execute("DELETE FROM rows WHERE state=1")
            self._conn.execute("DELETE FROM texts WHERE state=2")

    def import_committed(self, entries: Iterable[tuple[RowKey, str, str, str]]) -> None:
        """Record output rows ``(key, hash, source, location)`` as committed by run 0.

        Run 0 is earlier than every real run, so a row the input no longer has counts as gone.
        """
        with self._tx():
            cur = self._conn.cursor()
            for key, digest, source, location in entries:
                cur.execute(
                    "INSERT INTO rows(key, hash, run, state, source, location) "
                    "VALUES(?, ?, 0, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET hash=excluded.hash, "
                    "state=1, source=excluded.source, location=excluded.location",
                    (key, digest, source, location),
                )
                cur.execute(
                    "INSERT INTO texts(hash, state) VALUES(?, 2) "
                    "ON CONFLICT(hash) DO UPDATE SET state=2",
                    (digest,),
                )

    # -- texts -----------------------------------------------------------------------------

    def text(self, digest: str) -> TextRecord | None:
        """The journal's record of one text, or None when it has none."""
        found = self._conn.execute(
            f"SELECT {TEXT_COLUMNS} FROM texts WHERE hash=?",
            (digest,),
        ).fetchone()
        if found is None:
            return None
        record = TextRecord(found[0], TextState(found[1]), *found[2:])
        buffered = self._submitted.get(digest)
        if buffered is not None and record.state is TextState.INTENT:
            record = dataclasses.replace(
                record,
                state=TextState.SUBMITTED,
                request_id=buffered[0],
                submitted_at=buffered[1],
            )
        return record

    def record_intent(self, digests: Sequence[str]) -> None:
        """Write, durably, that submits for these texts are about to be sent (each one paid).

        Request_ids waiting in the buffer (:meth:`record_submitted`) go in the same
        transaction: one commit per submit instead of two.
        """
        with self._tx():  # which writes the buffered request_ids first
            self._conn.executemany(
                "INSERT INTO texts(hash, state, submits) VALUES(?, 0, 1) "
                "ON CONFLICT(hash) DO UPDATE SET state=0, request_id=NULL, submits=submits+1",
                ((d,) for d in digests),
            )

    def record_submitted(self, digest: str, request_id: str, submitted_at: float) -> bool:
        """Buffer the request_id of a text's job, written with the next intent or :meth:`flush`.

        Returns True when the buffer was empty: the caller then arranges a :meth:`flush`
        within a short delay. Until it is written, a crash leaves the text at INTENT, and a
        re-run submits it again and counts it as possibly billed twice: the same as a crash
        between the POST and its answer, never a lost row.
        """
        was_empty = not self._submitted
        self._submitted[digest] = (request_id, submitted_at)
        return was_empty

    def flush(self) -> None:
        """Write the buffered request_ids now (any other write or read does it first).

        A no-op once the journal is closed (a flush timer may fire after a failed run).
        """
        if self._submitted and self._lock_fd >= 0:
            with self._tx():  # a transaction writes the buffer first; nothing else to do
                pass

    def _write_submitted(self) -> None:
        if self._submitted:
            self._conn.executemany(
                "UPDATE texts SET state=1, request_id=?, submitted_at=? WHERE hash=?",
                ((rid, at, digest) for digest, (rid, at) in self._submitted.items()),
            )

    def forgive(self, digest: str) -> None:
        """``--retry-failed``: the text's submits so far no longer count against its allowance."""
        with self._tx():
            self._conn.execute("UPDATE texts SET forgiven=submits WHERE hash=?", (digest,))

    def record_not_sent(self, digest: str) -> None:
        """Undo an intent whose submit provably never reached the server (not paid)."""
        with self._tx():
            self._conn.execute(
                "UPDATE texts SET submits=max(0, submits-1) WHERE hash=? AND state=0", (digest,)
            )

    def record_text_failed(
        self, digest: str, kind: str, message: str, http_status: int | None
    ) -> None:
        """Write that a text cannot be embedded, with the reason its rows will carry."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO texts(hash, state, error_kind, error_message, http_status) "
                "VALUES(?, 3, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET state=3, "
                "error_kind=excluded.error_kind, error_message=excluded.error_message, "
                "http_status=excluded.http_status",
                (digest, kind, message, http_status),
            )

    def record_committed(self, keys: Sequence[RowKey], digests: Iterable[str]) -> None:
        """After a part commit: its rows are COMMITTED and its texts DONE, in one transaction."""
        with self._tx():
            self._conn.executemany("UPDATE rows SET state=1 WHERE key=?", ((k,) for k in keys))
            self._conn.executemany(
                "UPDATE texts SET state=2 WHERE hash=?", ((d,) for d in set(digests))
            )

    def unfinished_texts(self) -> Iterator[TextRecord]:
        """Texts with a job that an earlier run left unfinished (INTENT or SUBMITTED)."""
        self.flush()
        cur = self._conn.execute(f"SELECT {TEXT_COLUMNS} FROM texts WHERE state IN (0, 1)")
        for found in cur:
            yield TextRecord(found[0], TextState(found[1]), *found[2:])

    def total_submits(self) -> int:
        """All submits the journal has recorded, across runs."""
        self.flush()
        found = self._conn.execute("SELECT coalesce(sum(submits), 0) FROM texts").fetchone()
        return int(found[0])

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """BEGIN ... COMMIT (ROLLBACK on error) around a block; the connection is autocommit.

        Buffered request_ids are written first, so every transaction sees them, and leave
        the buffer only once the COMMIT succeeded (a ROLLBACK keeps them buffered).
        """
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._write_submitted()
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        self._submitted.clear()


def wall_clock() -> float:
    """Unix time; submission times in the journal are wall clock so they survive restarts."""
    return time.time()
