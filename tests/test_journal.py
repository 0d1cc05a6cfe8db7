"""Unit tests of the SQLite journal: row verdicts across runs, text states, the lock, fresh."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batch_embed.errors import JournalLocked
from batch_embed.journal import Journal, RowState, RowVerdict, TextState
from batch_embed.records import Row, RowKey, text_hash


def row(key: RowKey, text: str, line: int = 1) -> Row:
    return Row(
        key=key, text=text, source="in.jsonl", location=f"line {line}", text_hash=text_hash(text)
    )


def test_verdicts_within_one_run(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        verdicts = journal.admit_rows([row(1, "a"), row(2, "b"), row(1, "a"), row(2, "other")])
    assert verdicts == [RowVerdict.NEW, RowVerdict.NEW, RowVerdict.REPEAT, RowVerdict.CONFLICT]


def test_verdicts_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        assert journal.run == 1
        journal.admit_rows([row(1, "a"), row(2, "b"), row(3, "c"), row(4, "d")])
        journal.record_committed([1, 2], [text_hash("a"), text_hash("b")])
        journal.mark_rows([3], RowState.FAILED)
    with Journal.open(path) as journal:
        assert journal.run == 2
        verdicts = journal.admit_rows([row(1, "a"), row(2, "b changed"), row(3, "c"), row(5, "e")])
        # committed + same text: DONE; text changed: CHANGED; failed/pending earlier: NEW again
        assert verdicts == [RowVerdict.DONE, RowVerdict.CHANGED, RowVerdict.NEW, RowVerdict.NEW]
        # row 4 was not in this run's input
        assert journal.vanished_rows() == 1
        # only rows of this run that are not committed are pending
        pending = {key for key, *_ in journal.pending_rows()}
        assert pending == {2, 3, 5}
        # a DONE row repeated within the run is a harmless repeat
        assert journal.admit_rows([row(1, "a")]) == [RowVerdict.REPEAT]


def test_text_states_intent_submitted_committed_failed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    a, b, c = text_hash("a"), text_hash("b"), text_hash("c")
    with Journal.open(path) as journal:
        assert journal.text(a) is None
        journal.record_intent([a, b, c])
        record = journal.text(a)
        assert record is not None and record.state is TextState.INTENT
        assert record.request_id is None and record.submits == 1
        journal.record_submitted(a, "req-a", 1000.0)
        journal.record_submitted(b, "req-b", 1001.0)
        record = journal.text(a)
        assert record is not None and record.state is TextState.SUBMITTED
        assert (record.request_id, record.submitted_at) == ("req-a", 1000.0)
        journal.record_committed([], [a])
        journal.record_text_failed(b, "failed", "Content blocked", 422)
        journal.record_intent([c])  # a retry of c: a second submit
        journal.record_not_sent(c)  # ...which provably never left
    with Journal.open(path) as journal:
        done, failed, intent = journal.text(a), journal.text(b), journal.text(c)
        assert done is not None and done.state is TextState.DONE
        assert failed is not None and failed.state is TextState.FAILED
        assert (failed.error_kind, failed.error_message, failed.http_status) == (
            "failed",
            "Content blocked",
            422,
        )
        assert intent is not None and intent.state is TextState.INTENT and intent.submits == 1
        assert [t.hash for t in journal.unfinished_texts()] == [c]
        assert journal.total_submits() == 3


def test_a_new_intent_forgets_the_old_request_id(tmp_path: Path) -> None:
    digest = text_hash("a")
    with Journal.open(tmp_path / "j.sqlite") as journal:
        journal.record_intent([digest])
        journal.record_submitted(digest, "req-1", 1.0)
        journal.record_intent([digest])
        record = journal.text(digest)
        assert record is not None
        assert record.state is TextState.INTENT and record.request_id is None
        assert record.submits == 2


def test_meta_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        assert journal.meta("model") is None
        journal.set_meta({"model": "m", "dim": "3"})
    with Journal.open(path) as journal:
        assert (journal.meta("model"), journal.meta("dim")) == ("m", "3")


def test_fresh_forgets_everything(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        journal.admit_rows([row(1, "a")])
        journal.record_committed([1], [text_hash("a")])
    with Journal.open(path, fresh=True) as journal:
        assert journal.run == 1
        assert journal.text(text_hash("a")) is None
        assert journal.admit_rows([row(1, "a")]) == [RowVerdict.NEW]


def test_second_open_is_refused_while_locked(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path):
        with pytest.raises(JournalLocked, match="in use") as info:
            Journal.open(path)
        assert str(tmp_path) in str(info.value)
    with Journal.open(path) as journal:  # released on close
        assert journal.run == 2


def test_close_is_idempotent(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite")
    journal.close()
    journal.close()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from batch_embed.journal import Journal
        j = Journal.open(Path({str(path)!r}))
        print("locked", flush=True)
        sys.stdin.readline()
        j.close()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLocked, match=f"pid {proc.pid}"):
            Journal.open(path)
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    with Journal.open(path):
        pass


def test_lock_released_when_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    script = (
        f"from pathlib import Path; from batch_embed.journal import Journal; "
        f"j = Journal.open(Path({str(path)!r})); print('locked', flush=True); "
        "import time; time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLocked):
            Journal.open(path)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    with Journal.open(path) as journal:
        assert journal.run == 2


def _state_on_disk(path: Path, digest: str) -> tuple[int, str | None]:
    """What another process would read now (a crash loses anything not committed)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        state, request_id = db.execute(
            "SELECT state, request_id FROM texts WHERE hash=?", (digest,)
        ).fetchone()
    return int(state), request_id


def test_request_ids_are_buffered_until_the_next_intent_or_flush(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    a, b, c = text_hash("a"), text_hash("b"), text_hash("c")
    with Journal.open(path) as journal:
        journal.record_intent([a])
        assert journal.record_submitted(a, "req-a", 10.0) is True  # the caller arranges a flush
        assert _state_on_disk(path, a) == (TextState.INTENT, None)  # a crash now: resubmitted
        record = journal.text(a)  # ... but this run sees it at once
        assert record is not None and record.state is TextState.SUBMITTED
        assert (record.request_id, record.submitted_at) == ("req-a", 10.0)
        journal.record_intent([b])  # one commit writes b's intent and a's request_id
        assert _state_on_disk(path, a) == (TextState.SUBMITTED, "req-a")
        assert journal.record_submitted(b, "req-b", 11.0) is True
        assert journal.record_submitted(c, "req-c", 12.0) is False  # a flush is already due
        journal.flush()
        assert _state_on_disk(path, b) == (TextState.SUBMITTED, "req-b")
        journal.record_intent([a])  # a resubmit: the old request_id is forgotten
        journal.record_submitted(a, "req-a2", 13.0)
    # closing writes what is buffered
    assert _state_on_disk(path, a) == (TextState.SUBMITTED, "req-a2")


def test_a_failed_transaction_keeps_the_buffered_request_ids(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    a = text_hash("a")
    with Journal.open(path) as journal:
        journal.record_intent([a])
        journal.record_submitted(a, "req-a", 10.0)
        with pytest.raises(sqlite3.Error):  # a key sqlite cannot bind: the block rolls back
            journal.mark_rows([object()], RowState.FAILED)  # type: ignore[list-item]
        assert _state_on_disk(path, a) == (TextState.INTENT, None)
        journal.flush()
        assert _state_on_disk(path, a) == (TextState.SUBMITTED, "req-a")


def test_a_buffer_that_cannot_be_written_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    a = text_hash("a")
    journal = Journal.open(path)
    journal.record_intent([a])
    journal.record_submitted(a, object(), 10.0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):  # written first in every transaction: it fails
        journal.flush()
    # rolled back: the database is not left locked by a half-begun transaction
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    with pytest.raises(sqlite3.Error):  # and still buffered: the next one fails alike
        journal.record_intent([text_hash("b")])
    with pytest.raises(sqlite3.Error):  # closing reports it too, and lets the output go
        journal.close()
    journal.close()
    with Journal.open(path) as again:
        assert again.run == 2
