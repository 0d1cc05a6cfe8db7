"""Tests of the submitter's intent writer against a real journal: the intents released in one
loop iteration go in one transaction, each is durable before its caller goes on, and a
cancelled submit leaves no paid intent behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batch_embed.journal import Journal, TextState
from batch_embed.submitter import IntentWriter


class CountingJournal(Journal):
    """A real journal that counts its intent transactions."""

    transactions: list[list[str]]

    def record_intent(self, digests: object) -> None:
        self.transactions.append(list(digests))  # type: ignore[call-overload]
        super().record_intent(digests)  # type: ignore[arg-type]


def open_journal(tmp_path: Path) -> CountingJournal:
    journal = CountingJournal.open(tmp_path / "journal.sqlite")
    assert isinstance(journal, CountingJournal)
    journal.transactions = []
    return journal


def state(journal: Journal, digest: str) -> tuple[TextState, int] | None:
    record = journal.text(digest)
    return None if record is None else (record.state, record.submits)


async def test_intents_of_one_loop_iteration_share_one_transaction(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        writer = IntentWriter(journal)
        seen: list[tuple[TextState, int] | None] = []

        async def submit(digest: str) -> None:
            await writer.record(digest)
            seen.append(state(journal, digest))  # durable before the POST would go

        await asyncio.gather(*(submit(f"d{i}") for i in range(5)))
        await submit("later")
        assert journal.transactions == [[f"d{i}" for i in range(5)], ["later"]]
        assert seen == [(TextState.INTENT, 1)] * 6


async def test_a_submit_cancelled_before_the_write_leaves_no_intent(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        writer = IntentWriter(journal)
        kept = asyncio.create_task(writer.record("kept"))
        dropped = asyncio.create_task(writer.record("dropped"))
        await asyncio.sleep(0)  # both are waiting; the write is scheduled, not yet run
        dropped.cancel()
        await kept
        with pytest.raises(asyncio.CancelledError):
            await dropped
        assert journal.transactions == [["kept"]]
        assert state(journal, "dropped") is None


async def test_a_submit_cancelled_after_the_write_takes_its_payment_back(
    tmp_path: Path,
) -> None:
    with open_journal(tmp_path) as journal:
        writer = IntentWriter(journal)
        task = asyncio.create_task(writer.record("late"))
        await asyncio.sleep(0)  # waiting
        await asyncio.sleep(0)  # the write ran and resolved its future
        assert journal.transactions == [["late"]]
        task.cancel()  # before the task resumed to send its POST
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state(journal, "late") == (TextState.INTENT, 0)


async def test_a_failed_write_fails_every_submit_of_its_group(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        writer = IntentWriter(journal)
        journal.close()  # the database is gone: the write raises
        results = await asyncio.gather(
            writer.record("a"), writer.record("b"), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results), results
