"""``batch-embed status OUT`` through the real CLI: during a run in another process (which
holds the lock), after it finished, after a SIGKILL; it never writes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from batch_embed.layout import layout_for
from tests.cli_fixtures import (
    FAST,
    EmulatorProcess,
    batch_embed_cli,
    cli_command,
    cli_env,
    journal_count,
    run_cli,
)
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-status-0123456789"
ROWS = 30


def status(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = batch_embed_cli("status", out, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=cli_env(KEY))


def status_json(out: Path) -> dict[str, Any]:
    done = status(out, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def snapshot(out: Path) -> dict[Path, tuple[int, bytes]]:
    """Every file of the output and its journal: mtime and bytes."""
    layout = layout_for(out)
    paths = [p for p in layout.state_dir.rglob("*") if p.is_file()]
    paths += [layout.output] if layout.output.is_file() else []
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"st {i}"} for i in range(ROWS)])


def start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=cli_env(KEY), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for(ready: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def submitted(out: Path) -> int:
    return journal_count(out, "SELECT count(*) FROM texts WHERE state = 1")


def test_status_after_a_finished_run_and_it_never_writes(tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    with EmulatorProcess("--latency", "0") as emu:
        done = run_cli(cli_command(corpus(tmp_path), out, emu.url, None, *FAST), KEY)
        assert done.returncode == 0, done.stderr
    before = snapshot(out)
    found = status_json(out)
    assert snapshot(out) == before  # nothing written, not even a timestamp
    assert (found["rows_committed"], found["rows_pending"], found["rows_failed"]) == (ROWS, 0, 0)
    assert found["output_rows"] == ROWS and found["paid_calls"] == ROWS
    assert found["in_flight"] == 0
    run = found["last_run"]
    assert run["outcome"] == "completed" and run["ended"] is not None
    assert run["paid_calls"] == ROWS and found["runs"] == 1
    text = status(out)
    assert text.returncode == 0
    assert f"rows: committed {ROWS}, pending 0, failed 0" in text.stdout
    assert "last run #1: started" in text.stdout and ": completed" in text.stdout
    assert KEY not in text.stdout + text.stderr


def test_status_while_a_run_holds_the_lock_then_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    with EmulatorProcess("--latency", "20-30") as emu:  # the jobs stay in flight
        run = start(cli_command(corpus(tmp_path), out, emu.url, None, *FAST))
        try:
            wait_for(lambda: submitted(out) >= 5)
            found = status_json(out)
            assert found["last_run"]["outcome"] == "running"
            assert found["last_run"]["pid"] == run.pid
            assert found["in_flight"] >= 5
            assert 55 <= found["minutes_left_min"] <= found["minutes_left_max"] <= 60
            assert found["rows_committed"] == 0
            os.kill(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    found = status_json(out)
    assert found["last_run"]["outcome"] == "killed"
    assert found["last_run"]["ended"] is None
    assert found["in_flight"] >= 5
    assert "in flight" in status(out).stdout


def test_status_of_nothing_is_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    done = status(out)
    assert done.returncode == 2
    assert "no output and no journal" in done.stderr and "Traceback" not in done.stderr
