"""Log lines for cron and for log collectors: the CLI's stderr through a pipe, in text and in
JSON, and the progress cadence with an injected clock."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from batch_embed.log import Log
from batch_embed.progress import Progress
from batch_embed.ratelimit import AdaptiveLimiter, RateController
from batch_embed.stats import RunStats
from tests.cli_fixtures import EmulatorProcess, batch_embed_cli, run_cli
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-logs-0123456789"


@pytest.fixture(scope="module")
def slow() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0.8-1.2") as emu:
        yield emu  # type: ignore[misc]


def run(emu: EmulatorProcess, tmp_path: Path, *extra: str) -> tuple[int, str]:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"log {i}"} for i in range(40)])
    budget = ("--rpm", "600", "--read-rate", "400")  # 10 submits/s: about 4 s for 40 rows
    command = batch_embed_cli(
        "run",
        source,
        "--output",
        tmp_path / "v",
        "--base-url",
        emu.url,
        *budget,
        "--log-every",
        "0.5",
        *extra,
    )
    done = run_cli(command, KEY)
    return done.returncode, done.stderr


def test_text_log_through_a_pipe_is_plain_lines(slow: EmulatorProcess, tmp_path: Path) -> None:
    code, err = run(slow, tmp_path)
    assert code == 0, err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert all(line.startswith("batch-embed: ") for line in lines), err
    progress = [line for line in lines if "paid calls" in line]
    assert len(progress) >= 3, err
    for line in progress:
        for part in ("/40 done", "paid calls", "in flight", "/min of", "429s", "ETA"):
            assert part in line, line
    assert any(line.startswith("batch-embed: rows read 40:") for line in lines)


def test_json_log_is_one_object_per_line(slow: EmulatorProcess, tmp_path: Path) -> None:
    code, err = run(slow, tmp_path, "--log-format", "json", "--quiet")
    assert code == 0, err
    records = [orjson.loads(line) for line in err.splitlines()]  # every line is JSON
    assert all({"ts", "level", "event", "message"} <= set(r) for r in records)
    events = [r["event"] for r in records]
    assert "progress" in events and events[-1] == "summary"
    progress = next(r for r in records if r["event"] == "progress")
    for field in ("rows_done", "rows_total", "paid_calls", "in_flight", "eta_seconds"):
        assert field in progress
    assert progress["rows_total"] == 40
    summary = records[-1]
    assert summary["rows_read"] == 40 and summary["outcome"] == "completed"
    assert KEY not in err


def test_json_errors_are_json_too(tmp_path: Path) -> None:
    command = batch_embed_cli("run", tmp_path / "nothing.jsonl", "--output", tmp_path / "v")
    done = run_cli([*command, "--log-format", "json"], KEY)
    assert done.returncode == 2
    (record,) = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert record["level"] == "error" and "no such file" in record["message"]


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def progress(stream: Stream, fmt: Any = "text") -> tuple[Progress, list[float]]:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) > 3:
            raise asyncio.CancelledError

    stats = RunStats(started=100.0)
    stats.submits_accepted = 12
    log = Log(fmt, stream=stream, clock=lambda: 1_700_000_000.0)
    view = Progress(
        stats,
        AdaptiveLimiter(RateController(1.0)),
        log=log,
        expected_rows=100,
        log_every=60.0,
        clock=lambda: now[0],
        sleep=sleep,
    )
    return view, slept


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_off_a_terminal_a_line_every_log_every_seconds(fmt: str) -> None:
    stream = Stream(tty=False)
    view, slept = progress(stream, fmt)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(view.run())
    assert slept == [60.0] * 4
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    if fmt == "json":
        records = [orjson.loads(line) for line in lines]
        assert [r["elapsed_seconds"] for r in records] == [60.0, 120.0, 180.0]
        assert records[0]["ts"] == "2023-11-14T22:13:20.000+00:00"
        assert records[0]["paid_calls"] == 12
    else:
        assert "paid calls 12" in lines[0] and "1:00 elapsed" in lines[0]


def test_on_a_terminal_the_line_is_redrawn_but_never_in_json() -> None:
    stream = Stream(tty=True)
    view, slept = progress(stream)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(view.run())
    assert slept == [0.5] * 4 and stream.getvalue().count("\r") == 3
    stream = Stream(tty=True)
    view, slept = progress(stream, "json")
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(view.run())
    assert slept == [60.0] * 4 and "\r" not in stream.getvalue()
