"""The ray engine's journal: the request_ids its workers were given, on the driver's disk.

Ray Data writes a file only when its block is done, so a killed run leaves many texts
submitted (paid) whose vectors no file holds. This journal keeps their jobs, so the next
run re-attaches to them (:meth:`ClaimBook.adopt <batch_embed.ray.claims.ClaimBook.adopt>`)
instead of paying again, as the local engine's journal does.

One JSON line per job (``digest``, ``request_id``, ``submitted_at``), appended by
:class:`JournalPump`, which drains the registry actor's published jobs every
``PUMP_INTERVAL`` seconds while the run writes, and flushed to disk (``fsync``) each time.
A kill can lose the jobs of the last interval (paid again by the next run, never a lost
row) and can tear the last line (skipped when read). The file is emptied when a run
completes (every job of it was written); jobs older than the API's retention are dropped
when it is read. The output's lock (:mod:`batch_embed.run_lock`) is held for the run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import ray

from ..layout import JOURNAL_FILE
from ..run_lock import lock_beside, release_lock, take_lock
from ..write_failures import writing
from .claims import SubmittedJob
from .texts import RETENTION_MARGIN, RETENTION_SECONDS

JOBS_FILE = "ray-jobs.jsonl"
PUMP_INTERVAL = 0.5
"""Seconds between two drains of the registry (what a kill may cost, at the submit rate)."""


class JobJournal:
    """The jobs file of one output's state directory, locked; see the module doc."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, state_dir: Path) -> JobJournal:
        """Take the output's lock, the one the local engine's journal takes too
        (JournalLocked when another run holds it), and open the file."""
        lock = lock_beside(state_dir / JOURNAL_FILE)
        with writing(lock):
            fd = take_lock(lock)
        return cls(state_dir / JOBS_FILE, fd)

    def __enter__(self) -> JobJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock; idempotent."""
        if self._lock_fd >= 0:
            release_lock(self._lock_fd)
            self._lock_fd = -1

    def resumable(self, now: float) -> list[SubmittedJob]:
        """The journaled jobs still worth polling at wall time ``now``: the last one of
        each text, submitted less than the retention (less its margin) ago. The file is
        rewritten with only those."""
        latest: dict[str, SubmittedJob] = {}
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                found = orjson.loads(line)
                job = SubmittedJob(
                    str(found["digest"]), str(found["request_id"]), float(found["submitted_at"])
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line torn by a kill
            latest[job.digest] = job
        fresh = [
            job
            for job in latest.values()
            if now - job.submitted_at < RETENTION_SECONDS - RETENTION_MARGIN
        ]
        if len(fresh) < len(lines):
            self._replace(fresh)
        return fresh

    def append(self, jobs: Sequence[SubmittedJob]) -> None:
        """Add ``jobs``, on disk when this returns (WriteFailed naming the file if not)."""
        if not jobs:
            return
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(b"".join(_line(job) for job in jobs))
                fh.flush()
                os.fsync(fh.fileno())

    def clear(self) -> None:
        """Forget every job: the run that completed wrote all their vectors."""
        with writing(self.path):
            self.path.unlink(missing_ok=True)

    def _replace(self, jobs: Sequence[SubmittedJob]) -> None:
        staged = self.path.with_name(self.path.name + ".tmp")
        with writing(staged):
            with staged.open("wb") as fh:
                fh.write(b"".join(_line(job) for job in jobs))
                fh.flush()
                os.fsync(fh.fileno())
            staged.replace(self.path)


def _line(job: SubmittedJob) -> bytes:
    return orjson.dumps(job._asdict()) + b"\n"


class JournalPump:
    """A driver thread that moves the registry's published jobs into the journal.

    ``fetch(cursor)`` is the registry's ``published_since`` (blocking); :meth:`stop` makes
    the last drain and raises what the thread met (a full disk: WriteFailed).
    """

    def __init__(
        self,
        journal: JobJournal,
        fetch: Callable[[int], tuple[list[SubmittedJob], int]],
        interval: float = PUMP_INTERVAL,
    ) -> None:
        self._journal = journal
        self._fetch = fetch
        self._interval = interval
        self._cursor = 0
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="batch-embed-journal", daemon=True)
        self.journaled = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, drain once more, raise the thread's failure if it had one."""
        self._stopping.set()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        self._drain()

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._drain()
            except BaseException as err:  # raised again by stop()
                self._failure = err
                return

    def _drain(self) -> None:
        jobs, cursor = self._fetch(self._cursor)
        self._journal.append(jobs)
        self._cursor = cursor
        self.journaled += len(jobs)


def registry_fetch(registry: Any) -> Callable[[int], tuple[list[SubmittedJob], int]]:
    """``published_since`` of a registry actor, as a blocking call for :class:`JournalPump`."""

    def fetch(cursor: int) -> tuple[list[SubmittedJob], int]:
        jobs, following = ray.get(registry.published_since.remote(cursor))
        return [SubmittedJob(*job) for job in jobs], int(following)

    return fetch
