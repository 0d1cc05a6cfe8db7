"""Issue 4's policy table, one test per row, against the emulator on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from aiohttp import web

from batch_embed import Outcome, RunConfig, embed
from batch_embed.emulator import Emulator, EmulatorConfig
from batch_embed.pipeline import RunResult
from batch_embed.retry import RetryPolicy
from tests.pipeline_fixtures import (
    FAST,
    assert_vectors,
    corpus,
    error_rows,
    output_rows,
    run_config,
    write_jsonl,
)

KEY = "sk-test-policy-0123456789"
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05, max_attempts=4, max_elapsed=20.0)


def config(url: str, source: Path, output: Path, **overrides: object) -> RunConfig:
    return run_config(
        url, source, output, key=KEY, **{"retry": FAST_RETRY, "grace_seconds": 10.0, **overrides}
    )


async def run(
    tmp_path: Path, rows: list[dict[str, Any]], emulator: EmulatorConfig, **overrides: object
) -> tuple[RunResult, dict[str, Any]]:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    async with Emulator(emulator) as emu:
        result = await embed(config(emu.url, source, tmp_path / "out.parquet", **overrides))
        return result, emu.stats()


def check_accounted(
    result: RunResult, rows: list[dict[str, Any]]
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Every row is in the output (with its own vector) or in the errors, never both."""
    got = output_rows(result.layout)
    errors = error_rows(result.layout)
    assert not set(got) & set(errors)
    assert set(got) | set(errors) == {r["id"] for r in rows}
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    assert not result.stats.unbalanced
    pq.read_table(result.layout.output)  # the output is a valid Parquet file
    return got, errors


async def test_400_on_submit_is_an_error_row_and_the_run_goes_on(tmp_path: Path) -> None:
    rows = [*corpus(20), {"id": 99, "text": "bad [[fail-submit:400]]"}]
    result, stats = await run(tmp_path, rows, EmulatorConfig(latency=FAST))
    got, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ROWS_FAILED
    assert len(got) == 20 and list(errors) == [99]
    assert errors[99]["kind"] == "rejected" and errors[99]["http_status"] == 400
    assert stats["requests"]["submit"].get("400") == 1  # never retried


async def test_401_aborts_and_names_the_cause_not_the_key(tmp_path: Path) -> None:
    rows = corpus(10)
    result, stats = await run(tmp_path, rows, EmulatorConfig(latency=FAST, api_key="other-key"))
    _, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ABORTED
    assert result.reason is not None and "401" in result.reason and KEY not in result.reason
    assert all(e["kind"] == "aborted" for e in errors.values())
    assert stats["jobs_created"] == 0
    assert "10 rows are left" in result.reason


async def test_403_aborts_and_collects_what_is_in_flight(tmp_path: Path) -> None:
    rows = corpus(60)
    rows[30]["text"] = "forbidden [[fail-submit:403]]"
    result, stats = await run(
        tmp_path, rows, EmulatorConfig(latency=(0.3, 0.5)), max_in_flight=8, rpm=1200.0
    )
    got, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ABORTED
    assert result.reason is not None and "403" in result.reason
    # Every job the API created (and billed) before the abort was collected into the output.
    assert stats["jobs_created"] == len(got) > 0
    assert {e["kind"] for e in errors.values()} == {"aborted"}


async def test_406_aborts_saying_credits_ran_out_and_rows_left(tmp_path: Path) -> None:
    rows = corpus(30)
    result, stats = await run(
        tmp_path, rows, EmulatorConfig(latency=FAST, credits=0.0105), max_in_flight=4
    )
    got, _errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ABORTED
    assert result.reason is not None and "credits ran out" in result.reason
    assert f"{len(rows) - len(got)} rows are left" in result.reason
    assert stats["jobs_created"] == len(got) == 10


async def test_404_inside_the_hour_retries_the_poll_then_resubmits(tmp_path: Path) -> None:
    rows = corpus(10)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    # The emulator forgets jobs after 0.2 s while the run believes it has its full hour.
    async with Emulator(EmulatorConfig(latency=(0.4, 0.5), retention=0.2)) as emu:
        task = asyncio.create_task(embed(config(emu.url, source, tmp_path / "out.parquet")))
        while emu.stats()["jobs_created"] <= len(rows):  # wait for the first resubmits
            await asyncio.sleep(0.02)
        emu.update(retention=3600.0, latency=FAST)
        result = await task
        stats = emu.stats()
    check_accounted(result, rows)
    assert result.outcome is Outcome.COMPLETED
    assert result.stats.resubmits["not_found"] >= 1
    assert stats["requests"]["status"].get("404", 0) > result.stats.resubmits["not_found"]
    assert sum(result.stats.resubmits.values()) == stats["jobs_created"] - len(rows)


async def test_404_after_the_hour_resubmits_counted(tmp_path: Path) -> None:
    rows = corpus(10)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    short = {"retention": 1.0, "retention_margin": 0.2}
    async with Emulator(EmulatorConfig(latency=(1.5, 1.6), retention=1.0)) as emu:
        task = asyncio.create_task(
            embed(config(emu.url, source, tmp_path / "out.parquet", **short))
        )
        while emu.stats()["jobs_created"] <= len(rows):
            await asyncio.sleep(0.02)
        emu.update(latency=FAST)
        result = await task
        stats = emu.stats()
    check_accounted(result, rows)
    assert result.outcome is Outcome.COMPLETED
    assert result.stats.resubmits["expired"] >= 1
    assert sum(result.stats.resubmits.values()) == stats["jobs_created"] - len(rows)


async def test_422_failed_is_an_error_row_with_segminds_text(tmp_path: Path) -> None:
    rows = [*corpus(10), {"id": 99, "text": "please [[blocked]]"}]
    result, stats = await run(tmp_path, rows, EmulatorConfig(latency=FAST))
    _, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ROWS_FAILED
    assert list(errors) == [99] and errors[99]["kind"] == "failed"
    assert errors[99]["http_status"] == 422
    assert "Content blocked by safety filter" in str(errors[99]["message"])
    assert stats["jobs_created"] == 11  # no retry


async def test_429_storms_never_make_an_error_row(tmp_path: Path) -> None:
    rows = corpus(60)
    for rate in (0.0, 1.0):
        emulator = EmulatorConfig(
            latency=FAST, submit_limit="10/s", read_limit="40/s", retry_after_rate=rate
        )
        (tmp_path / f"r{rate}").mkdir()
        result, stats = await run(tmp_path / f"r{rate}", rows, emulator, rpm=3000.0)
        check_accounted(result, rows)
        assert result.outcome is Outcome.COMPLETED
        assert sum(stats["rate_limited"].values()) > 0
        assert stats["jobs_created"] == 60


async def test_5xx_is_retried_then_an_error_row(tmp_path: Path) -> None:
    rows = [*corpus(10), {"id": 99, "text": "x [[fail-submit:502]]"}]
    result, stats = await run(tmp_path, rows, EmulatorConfig(latency=FAST))
    _, errors = check_accounted(result, rows)
    assert list(errors) == [99] and errors[99]["kind"] == "retries_exhausted"
    assert errors[99]["http_status"] == 502
    assert stats["requests"]["submit"]["502"] == FAST_RETRY.max_attempts


async def test_transient_faults_are_retried_and_leave_no_error(tmp_path: Path) -> None:
    rows = corpus(80)
    emulator = EmulatorConfig(latency=FAST, error_rate=0.1, drop_rate=0.05, seed=2)
    result, stats = await run(
        tmp_path, rows, emulator, retry=RetryPolicy(base=0.01, cap=0.05, max_attempts=12)
    )
    got, _errors = check_accounted(result, rows)
    assert result.outcome is Outcome.COMPLETED and len(got) == 80
    assert stats["faults"]["error"] > 0 and stats["faults"]["drop"] > 0
    assert result.stats.retries > 0


async def test_dropped_connections_that_persist_end_as_error_rows(tmp_path: Path) -> None:
    rows = corpus(5)
    (tmp_path / "sub").mkdir()
    result, _ = await run(tmp_path / "sub", rows, EmulatorConfig(latency=FAST, drop_rate=1.0))
    _, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ROWS_FAILED
    assert {e["kind"] for e in errors.values()} == {"retries_exhausted"}
    assert all(e["attempts"] == FAST_RETRY.max_attempts for e in errors.values())


async def test_a_lost_submit_answer_is_counted_as_possibly_billed_twice(tmp_path: Path) -> None:
    rows = corpus(60)
    emulator = EmulatorConfig(latency=FAST, lost_submit_rate=0.2, seed=7)
    result, stats = await run(
        tmp_path, rows, emulator, retry=RetryPolicy(base=0.01, cap=0.05, max_attempts=12)
    )
    got, _ = check_accounted(result, rows)
    assert len(got) == 60
    assert stats["faults"]["lost_submit"] > 0
    assert result.stats.possibly_billed_twice >= stats["texts_submitted_more_than_once"] > 0
    assert "possibly billed twice" in " ".join(result.stats.summary_lines())


async def test_bad_outputs_are_error_rows_quoting_the_body(tmp_path: Path) -> None:
    bad = {
        90 + i: f"text {kind} [[bad-output:{kind}]]"
        for i, kind in enumerate(("nan", "zeros", "short", "garbage"))
    }
    rows = corpus(10) + [{"id": k, "text": t} for k, t in bad.items()]
    result, _ = await run(tmp_path, rows, EmulatorConfig(latency=FAST))
    _, errors = check_accounted(result, rows)
    assert set(errors) == set(bad)
    for record in errors.values():
        assert record["kind"] == "bad_output"
        assert record["request_ids"]
    garbage = str(errors[93]["message"])
    assert len(garbage) < 400  # the body is quoted, not dumped


async def test_timeouts_alone_are_retried_then_an_error_row(tmp_path: Path) -> None:
    doomed = "this text's submit is never answered in time"
    rows = [*corpus(20), {"id": 99, "text": doomed}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    # Transient: 15% of all answers come 0.6-0.8 s late (the emulator's slow_rate switch).
    emulator = Emulator(EmulatorConfig(latency=FAST, slow_rate=0.15, slow=(0.6, 0.8), seed=5))
    # Persistent: the doomed text's submit always answers 0.6 s late. ([[slow:S]] cannot do
    # this: it sets the job's latency, and a slow job answers its status polls at once.)
    doomed_submits = 0

    @web.middleware
    async def late(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal doomed_submits
        if request.method == "POST" and doomed.encode() in await request.read():
            doomed_submits += 1
            await asyncio.sleep(0.6)
        response: web.StreamResponse = await handler(request)
        return response

    emulator.app.middlewares.append(late)
    retry = RetryPolicy(base=0.01, cap=0.05, max_attempts=6, max_elapsed=20.0)
    async with emulator as emu:
        result = await embed(
            config(emu.url, source, tmp_path / "out.parquet", retry=retry, request_timeout=0.3)
        )
        stats = emu.stats()
    got, errors = check_accounted(result, rows)
    assert result.outcome is Outcome.ROWS_FAILED
    assert len(got) == 20 and list(errors) == [99]
    # Some answers to the good rows timed out too, and were retried (beyond the doomed ones).
    assert stats["faults"]["slow"] > 0 and result.stats.retries > retry.max_attempts - 1
    record = errors[99]
    assert record["kind"] == "retries_exhausted" and record["http_status"] is None
    assert "timed out" in str(record["message"])
    assert record["attempts"] == doomed_submits == retry.max_attempts
    assert result.stats.possibly_billed_twice >= 1  # a timed-out submit may have been billed
