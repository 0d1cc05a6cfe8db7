"""The ray engine's journal of submitted jobs (batch_embed.ray.job_journal), on real files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from batch_embed.errors import JournalLocked, WriteFailed
from batch_embed.journal import Journal
from batch_embed.ray.claims import SubmittedJob
from batch_embed.ray.job_journal import JOBS_FILE, JobJournal, JournalPump
from batch_embed.ray.texts import RETENTION_MARGIN, RETENTION_SECONDS

NOW = 1_800_000_000.0
FRESH = RETENTION_SECONDS - RETENTION_MARGIN - 1


def test_the_last_job_of_each_text_survives_a_torn_line_and_stale_jobs_are_dropped(
    tmp_path: Path,
) -> None:
    with JobJournal.open(tmp_path) as journal:
        journal.append([SubmittedJob("a", "r-a1", NOW - 10), SubmittedJob("b", "r-b", NOW - 5)])
        journal.append([SubmittedJob("a", "r-a2", NOW - 2)])  # resubmitted: the later wins
        journal.append([SubmittedJob("old", "r-old", NOW - FRESH - 2)])
    with (tmp_path / JOBS_FILE).open("ab") as fh:
        fh.write(b'{"digest": "c", "request_id": "r-')  # a kill in the middle of a line
    with JobJournal.open(tmp_path) as journal:
        found = journal.resumable(NOW)
        assert sorted(found) == [
            SubmittedJob("a", "r-a2", NOW - 2),
            SubmittedJob("b", "r-b", NOW - 5),
        ]
        assert len((tmp_path / JOBS_FILE).read_bytes().splitlines()) == 2  # compacted
        assert journal.resumable(NOW) == found
        journal.clear()
        assert journal.resumable(NOW) == []
        assert not (tmp_path / JOBS_FILE).exists()


def test_a_second_run_on_the_same_output_is_refused_by_either_engine(tmp_path: Path) -> None:
    with JobJournal.open(tmp_path):
        with pytest.raises(JournalLocked, match="in use by a running batch-embed"):
            JobJournal.open(tmp_path)
        with pytest.raises(JournalLocked):
            Journal.open(tmp_path / "journal.sqlite")
    with JobJournal.open(tmp_path):  # released with the run
        pass


def test_the_pump_journals_every_published_job_once_and_drains_at_stop(tmp_path: Path) -> None:
    published = [SubmittedJob(str(i), f"r-{i}", NOW + i) for i in range(5)]
    visible = 2
    lock = threading.Lock()

    def fetch(cursor: int) -> tuple[list[SubmittedJob], int]:
        with lock:
            return published[cursor:visible], max(cursor, visible)

    with JobJournal.open(tmp_path) as journal:
        pump = JournalPump(journal, fetch, interval=0.01)
        pump.start()
        while pump.journaled < 2:
            threading.Event().wait(0.01)
        with lock:
            visible = 5
        pump.stop()
        assert pump.journaled == 5
        assert sorted(journal.resumable(NOW)) == published


def test_a_journal_that_cannot_be_written_fails_the_run_naming_the_file(tmp_path: Path) -> None:
    def fetch(cursor: int) -> tuple[list[SubmittedJob], int]:
        return [SubmittedJob("a", "r-a", NOW)], 1

    with JobJournal.open(tmp_path) as journal:
        (tmp_path / JOBS_FILE).mkdir()  # not a file: every append fails
        pump = JournalPump(journal, fetch, interval=0.01)
        pump.start()
        threading.Event().wait(0.1)
        with pytest.raises(WriteFailed, match=JOBS_FILE):
            pump.stop()
