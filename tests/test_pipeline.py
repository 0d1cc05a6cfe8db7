"""End-to-end runs of the pipeline against the emulator on loopback, read back with pyarrow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from batch_embed import ConfigError, JournalLocked, Outcome, RunConfig, embed
from batch_embed.emulator import Emulator, EmulatorConfig
from batch_embed.journal import Journal
from batch_embed.layout import layout_for
from tests.pipeline_fixtures import (
    FAST,
    assert_vectors,
    corpus,
    error_rows,
    output_rows,
    run_config,
    write_jsonl,
    write_parquet,
)

KEY = "sk-test-pipeline-0123456789"


def config(url: str, inputs: list[Path], output: Path, **overrides: object) -> RunConfig:
    return run_config(url, inputs, output, key=KEY, **{**overrides})


async def test_jsonl_and_parquet_every_row_once_with_its_own_vector(tmp_path: Path) -> None:
    a = corpus(150, distinct=120)
    b = [{"id": r["id"] + 1000, "text": r["text"]} for r in corpus(80, start=100)]
    inputs = [write_jsonl(tmp_path / "a.jsonl", a), write_parquet(tmp_path / "b.parquet", b)]
    texts = {r["id"]: r["text"] for r in a + b}
    async with Emulator(EmulatorConfig(latency=FAST, seed=1)) as emu:
        result = await embed(config(emu.url, inputs, tmp_path / "out.parquet"))
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    rows = output_rows(result.layout)
    assert set(rows) == set(texts)
    assert_vectors(rows, texts)
    distinct = len(set(texts.values()))
    assert result.stats.distinct_texts == distinct
    assert stats["submits_accepted"] == distinct
    assert stats["max_submits_per_text"] == 1
    assert result.stats.rows_read == 230 and not result.stats.unbalanced
    assert error_rows(result.layout) == {}
    table = ds.dataset(result.layout.output).to_table()
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[3072]"
    assert table.schema.field("id").type == "int64"
    count = duckdb.sql(f"select count(*) from read_parquet('{result.layout.output}')").fetchall()
    assert count == [(230,)]


async def test_directory_output_reads_as_one_table(tmp_path: Path) -> None:
    rows = corpus(60)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        result = await embed(config(emu.url, [source], tmp_path / "vectors", rows_per_part=16))
    assert result.outcome is Outcome.COMPLETED
    parts = sorted((tmp_path / "vectors").glob("part-*.parquet"))
    assert len(parts) >= 4
    assert ds.dataset(tmp_path / "vectors").count_rows() == 60
    got = output_rows(result.layout)
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    glob = f"{tmp_path}/vectors/*.parquet"
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall() == [(60,)]


async def test_a_part_is_committed_commit_interval_after_its_first_row(tmp_path: Path) -> None:
    # Half the jobs wait 3 s for a cold worker. The others' vectors arrive at once, and with
    # parts of 1000 rows only the interval commits them: it must, well before the slow ones
    # arrive (no vector comes in the meantime to wake the writer).
    rows = corpus(12)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "vectors"
    emulator = EmulatorConfig(latency=FAST, cold_start_rate=0.5, cold_start=(3.0, 3.0), seed=3)
    async with Emulator(emulator) as emu:
        run = asyncio.create_task(
            embed(config(emu.url, [source], out, rows_per_part=1000, commit_interval=0.2))
        )
        await asyncio.sleep(2.2)  # the first polls go out at 1 s
        early = sorted(out.glob("part-*.parquet"))
        assert not run.done()
        result = await run
    assert len(early) == 1, early
    assert 0 < ds.dataset(early).count_rows() < 12
    assert result.outcome is Outcome.COMPLETED
    assert_vectors(output_rows(result.layout), {r["id"]: r["text"] for r in rows})


async def test_bad_rows_become_error_rows_and_the_rest_is_embedded(tmp_path: Path) -> None:
    good = corpus(20)
    lines = [
        *good[:10],
        b"{not json",
        {"id": 50, "text": "   "},
        {"id": 51, "text": 7},
        {"id": 52, "text": "please [[blocked]]"},
        {"id": 53, "text": "x [[bad-output:nan]]"},
        {"id": 54},
        *good[10:],
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        result = await embed(config(emu.url, [source], tmp_path / "out.parquet"))
    assert result.outcome is Outcome.ROWS_FAILED
    assert set(output_rows(result.layout)) == {r["id"] for r in good}
    errors = error_rows(result.layout)
    assert errors[f"{source}:11"]["kind"] == "bad_input"
    assert "line 11" in str(errors[f"{source}:11"]["message"])
    assert errors[50]["kind"] == "bad_input" and errors[51]["kind"] == "bad_input"
    assert errors[54]["kind"] == "bad_input" and errors[54]["field"] == "text"
    assert errors[52]["kind"] == "failed" and errors[52]["http_status"] == 422
    assert "blocked" in str(errors[52]["message"]).lower()
    assert errors[52]["request_ids"]
    assert errors[53]["kind"] == "bad_output"
    ledger = result.stats.files[str(source)]
    assert (ledger.read, ledger.embedded, ledger.failed) == (26, 20, 6)


async def test_duplicate_id_with_other_text_is_an_error_same_text_is_skipped(
    tmp_path: Path,
) -> None:
    lines = [
        {"id": 1, "text": "alpha"},
        {"id": 2, "text": "beta"},
        {"id": 1, "text": "alpha"},
        {"id": 2, "text": "gamma"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        result = await embed(config(emu.url, [source], tmp_path / "out.parquet"))
    assert set(output_rows(result.layout)) == {1, 2}
    errors = error_rows(result.layout)
    assert list(errors) == [2] and errors[2]["kind"] == "duplicate_id"
    assert errors[2]["location"] == "line 4"
    assert result.stats.repeated_ids == 1 and result.stats.rows_skipped == 1


async def test_duplicate_texts_far_apart_are_submitted_once_and_copied(tmp_path: Path) -> None:
    rows = corpus(40) + [{"id": 100 + i, "text": r["text"]} for i, r in enumerate(corpus(40))]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        # One job in flight at a time: the second half's texts are all already written.
        result = await embed(
            config(emu.url, [source], tmp_path / "out.parquet", max_in_flight=1, rows_per_part=8)
        )
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert stats["submits_accepted"] == 40
    got = output_rows(result.layout)
    assert len(got) == 80
    assert_vectors(got, {r["id"]: r["text"] for r in rows})


async def test_a_limit_below_the_configured_rate_settles_with_few_429s(tmp_path: Path) -> None:
    rows = corpus(240)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    emulator = EmulatorConfig(latency=FAST, submit_limit="40/s", retry_after_rate=0.0)
    async with Emulator(emulator) as emu:
        result = await embed(config(emu.url, [source], tmp_path / "out.parquet", rpm=80 * 60.0))
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert len(output_rows(result.layout)) == 240
    throttled = result.stats.throttled_submits
    assert throttled == stats["rate_limited"]["submit"]
    # Over-asking by 2x: the controller backs off instead of storming.
    assert throttled < 0.25 * 240, throttled


async def test_a_shared_limit_is_one_budget_for_submits_and_reads(tmp_path: Path) -> None:
    rows = corpus(60)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    rate = 50.0  # requests/s of every kind together; run_config's read_rate (400/s) is unused
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await embed(config(emu.url, [source], out, rpm=rate * 60, shared_limit=True))
        elapsed = loop.time() - started
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert_vectors(output_rows(result.layout), {r["id"]: r["text"] for r in rows})
    requests = stats["requests_total"]
    assert requests >= 3 * 60  # a submit, a poll and a fetch per text
    # Never faster than the one budget (plus the limiter's 20 ms burst): two budgets would
    # have let the reads go at 400/s.
    assert requests <= rate * elapsed + 2, (requests, elapsed)


async def test_rerun_skips_committed_rows_and_pays_nothing(tmp_path: Path) -> None:
    rows = corpus(50)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        first = await embed(config(emu.url, [source], out))
        submits = emu.stats()["submits_accepted"]
        write_jsonl(tmp_path / "in.jsonl", [*rows, *corpus(5, start=50, distinct=10**6)])
        second = await embed(config(emu.url, [source], out))
        assert emu.stats()["submits_accepted"] == submits + 5
    assert first.outcome is Outcome.COMPLETED and second.outcome is Outcome.COMPLETED
    assert second.stats.resumed_done == 50 and second.stats.rows_skipped == 50
    got = output_rows(second.layout)
    assert len(got) == 55
    assert_vectors(got, {r["id"]: r["text"] for r in [*rows, *corpus(5, start=50, distinct=10**6)]})


async def test_a_second_run_on_a_locked_output_refuses(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", corpus(3))
    out = tmp_path / "out.parquet"
    with Journal.open(layout_for(out).journal), pytest.raises(JournalLocked, match="in use"):
        await embed(config("http://127.0.0.1:9", [source], out))


async def test_a_different_model_on_the_same_output_is_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", corpus(3))
    out = tmp_path / "out.parquet"
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        await embed(config(emu.url, [source], out))
        with pytest.raises(ConfigError, match="model"):
            await embed(config(emu.url, [source], out, model="text-embedding-3-small"))


async def test_stop_event_ends_the_run_with_valid_output(tmp_path: Path) -> None:
    rows = corpus(400)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    stop = asyncio.Event()
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, stop.set)
        result = await embed(
            config(emu.url, [source], tmp_path / "out.parquet", rpm=60 * 200.0, grace_seconds=5.0),
            stop=stop,
        )
    assert result.outcome is Outcome.INTERRUPTED
    got = output_rows(result.layout)
    assert 0 < len(got) < 400
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    assert not result.stats.unbalanced
