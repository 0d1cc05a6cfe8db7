"""Crash-safe resume (issue 5): re-attach, expiry, changed input, and SIGKILLed CLI runs."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch_embed import JournalLocked, Outcome, RunConfig, embed
from batch_embed.emulator import Emulator, EmulatorConfig
from batch_embed.layout import layout_for
from tests.cli_fixtures import EmulatorProcess, cli_command, cli_env, journal_count, run_cli
from tests.pipeline_fixtures import (
    FAST,
    assert_vectors,
    corpus,
    error_rows,
    output_rows,
    run_config,
    write_jsonl,
)

KEY = "sk-test-resume-0123456789"


def config(url: str, source: Path, output: Path, **overrides: object) -> RunConfig:
    return run_config(url, source, output, key=KEY, **{"grace_seconds": 0.05, **overrides})


async def interrupted_run(cfg: RunConfig, *, after: float) -> Outcome:
    """Run, and set the stop event after ``after`` seconds (jobs still in flight)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(after, stop.set)
    result = await embed(cfg, stop=stop)
    return result.outcome


def submitted_in_journal(output: Path) -> int:
    with sqlite3.connect(layout_for(output).journal) as db:
        return int(
            db.execute(
                "SELECT count(*) FROM texts WHERE state=1 AND request_id IS NOT NULL"
            ).fetchone()[0]
        )


async def test_reattaches_within_the_hour_instead_of_resubmitting(tmp_path: Path) -> None:
    rows = corpus(40)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    async with Emulator(EmulatorConfig(latency=(1.5, 2.0), seed=3)) as emu:
        first = await interrupted_run(config(emu.url, source, out), after=0.5)
        assert first is Outcome.INTERRUPTED
        in_air = submitted_in_journal(out)
        assert in_air > 0
        created = emu.stats()["jobs_created"]
        result = await embed(config(emu.url, source, out))
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert result.stats.reattached == in_air
    assert stats["jobs_created"] == created + (40 - in_air)  # only never-submitted texts
    assert stats["max_submits_per_text"] == 1
    assert not result.stats.resubmits
    got = output_rows(result.layout)
    assert set(got) == {r["id"] for r in rows}
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    assert error_rows(result.layout) == {}


async def test_after_the_hour_jobs_are_resubmitted_and_counted(tmp_path: Path) -> None:
    rows = corpus(30)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    short = {"retention": 2.0, "retention_margin": 0.5}
    async with Emulator(EmulatorConfig(latency=(1.2, 1.5), retention=2.0, seed=4)) as emu:
        assert await interrupted_run(config(emu.url, source, out, **short), after=0.4) is (
            Outcome.INTERRUPTED
        )
        in_air = submitted_in_journal(out)
        assert in_air > 0
        await asyncio.sleep(2.2)  # the jobs' "hour" is over
        emu.update(latency=FAST)
        result = await embed(config(emu.url, source, out, **short))
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert result.stats.resubmits["expired"] == in_air
    assert result.stats.reattached == 0
    assert "resubmitted" in " ".join(result.stats.summary_lines())
    assert stats["texts_submitted_more_than_once"] == in_air
    got = output_rows(result.layout)
    assert set(got) == {r["id"] for r in rows}
    assert_vectors(got, {r["id"]: r["text"] for r in rows})


@pytest.mark.parametrize("output_name", ["out.parquet", "vectors"])
async def test_changed_input_is_embedded_again_and_vanished_rows_reported(
    tmp_path: Path, output_name: str
) -> None:
    rows = corpus(20)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / output_name
    async with Emulator(EmulatorConfig(latency=FAST)) as emu:
        first = await embed(config(emu.url, source, out, rows_per_part=8))
        assert first.outcome is Outcome.COMPLETED
        created = emu.stats()["jobs_created"]
        changed = [dict(r) for r in rows if r["id"] not in (5, 6)]
        changed[3]["text"] = "a brand new text for row 3"
        write_jsonl(source, changed)
        result = await embed(config(emu.url, source, out, rows_per_part=8))
        stats = emu.stats()
    assert result.outcome is Outcome.COMPLETED
    assert stats["jobs_created"] == created + 1
    assert result.stats.changed_rows == 1 and result.stats.vanished_rows == 2
    assert result.stats.resumed_done == 17
    assert result.stats.as_dict()["vanished_rows"] == 2
    assert any("gone from the input" in line for line in result.stats.summary_lines())
    got = output_rows(result.layout)  # fails on a duplicated id
    texts = {r["id"]: r["text"] for r in rows} | {3: "a brand new text for row 3"}
    assert set(got) == set(texts)  # vanished rows stay in the output
    assert_vectors(got, texts)


async def test_a_second_run_on_the_same_output_is_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", corpus(10))
    out = tmp_path / "out.parquet"
    async with Emulator(EmulatorConfig(latency=(0.5, 0.6))) as emu:
        task = asyncio.create_task(embed(config(emu.url, source, out)))
        await asyncio.sleep(0.3)
        with pytest.raises(JournalLocked, match="in use"):
            await embed(config(emu.url, source, out))
        assert (await task).outcome is Outcome.COMPLETED


# -- a real CLI process, SIGKILLed at several moments ------------------------------------


def intents_without_request_id(output: Path) -> int:
    with sqlite3.connect(layout_for(output).journal) as db:
        return int(
            db.execute(
                "SELECT count(*) FROM texts WHERE state=0 AND request_id IS NULL"
            ).fetchone()[0]
        )


def kill_when(proc: subprocess.Popen[bytes], ready: object, *, limit: float = 30.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; False if it never was."""
    deadline = time.monotonic() + limit
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():  # type: ignore[operator]
            seen = True
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return seen


def test_sigkilled_runs_resume_every_row_once_paying_nothing_twice(tmp_path: Path) -> None:
    rows = corpus(300)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    parts = layout_for(out).parts_dir
    with EmulatorProcess("--latency", "0.3-0.9", "--api-key", KEY, "--seed", "5") as emu:
        command = cli_command(
            source,
            out,
            emu.url,
            None,
            "--max-in-flight",
            "24",
            "--rpm",
            "2400",
            "--read-rate",
            "300",
            "--rows-per-part",
            "16",
        )

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command, env=cli_env(KEY), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

        def submitting() -> bool:
            return journal_count(out, "SELECT count(*) FROM texts WHERE state=0") > 0

        def many_in_flight() -> bool:
            return journal_count(out, "SELECT count(*) FROM texts WHERE state=1") >= 16

        def writing_a_part() -> bool:
            return parts.exists() and any(p.name.endswith(".tmp") for p in parts.iterdir())

        in_air = 0
        for ready in (submitting, many_in_flight, writing_a_part):
            proc = start()
            assert kill_when(proc, ready), f"never saw the moment {ready.__name__}"
            assert proc.returncode == -signal.SIGKILL
            in_air += intents_without_request_id(out)
            print(ready.__name__, "intents without request_id:", in_air)
            for part in parts.glob("part-*.parquet"):  # every committed part reads on its own
                pq.read_table(part)
        final = run_cli(command, KEY, timeout=100)
        stats = emu.stats()
    assert final.returncode == 0, final.stderr
    got = output_rows(layout_for(out))
    texts = {r["id"]: r["text"] for r in rows}
    assert set(got) == set(texts)
    assert_vectors(got, texts)
    assert error_rows(layout_for(out)) == {}
    extra = int(stats["jobs_created"]) - int(stats["distinct_texts"])  # type: ignore[call-overload]
    assert stats["distinct_texts"] == len(texts)
    assert extra <= in_air, (extra, in_air)
    assert int(stats["max_submits_per_text"]) <= 1 + in_air  # type: ignore[call-overload]
    assert not parts.exists() or not list(parts.glob(".*.tmp"))
