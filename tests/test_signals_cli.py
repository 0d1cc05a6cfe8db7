"""SIGINT/SIGTERM through the real CLI (issue 4).

A first signal stops submitting, collects the jobs in flight for a grace period, writes and
closes the output, prints the summary and exits 5; a second signal exits at once; a written
Parquet file is never left unreadable, and the same command run again resumes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from batch_embed.layout import layout_for
from tests.cli_fixtures import EmulatorProcess, cli_command, cli_env, journal_count, run_cli
from tests.pipeline_fixtures import (
    FAST,
    assert_vectors,
    corpus,
    error_rows,
    output_rows,
    write_jsonl,
)

KEY = "sk-test-signals-0123456789"
SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
SUMMARY_LINE = "batch-embed: rows read "
INTERRUPTED_LINE = "batch-embed: interrupted; run the same command again to resume"
SECOND_SIGNAL_LINE = "batch-embed: second signal, exiting now"

SUBMITTED_SQL = "SELECT count(*) FROM texts WHERE request_id IS NOT NULL"
IN_FLIGHT_SQL = "SELECT count(*) FROM texts WHERE state=1"
DONE_SQL = "SELECT count(*) FROM texts WHERE state=2"
INTENT_SQL = "SELECT count(*) FROM texts WHERE state=0"


def stopping_line(signum: signal.Signals) -> str:
    return f"batch-embed: {signum.name}: stopping; collecting jobs in flight"


class CliRun:
    """``python -m batch_embed run ...`` in a subprocess; its stderr goes to a file read live."""

    def __init__(self, command: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            command, env=cli_env(KEY), stdout=subprocess.DEVNULL, stderr=self._stderr
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], *, limit: float = 30.0) -> bool:
        """Poll ``ready()`` every millisecond while the process runs; False if never true."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.proc.poll() is None:
            if ready():
                return True
            time.sleep(0.001)
        return False

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> CliRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


def jobs_created(emu: EmulatorProcess) -> int:
    return stat(emu, "jobs_created")


def stat(emu: EmulatorProcess, name: str) -> int:
    value = emu.stats()[name]
    assert isinstance(value, int), (name, value)
    return value


def update_emulator(emu: EmulatorProcess, **changes: object) -> None:
    request = urllib.request.Request(
        emu.url + "/_emulator/config", data=orjson.dumps(changes), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def read_summary(path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = orjson.loads(path.read_bytes())
    return summary


def assert_parquet_readable(out: Path) -> int:
    """Every Parquet file of the run (the output and the parts in its state dir) reads whole.

    Returns the rows in the output file (0 when it was not written).
    """
    layout = layout_for(out)
    for part in sorted(layout.state_dir.rglob("*.parquet")):
        pq.read_table(part)
    if not out.exists():
        return 0
    return int(pq.read_table(out).num_rows)


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "exception" not in stderr.lower(), stderr


# -- a first signal: stop, collect, write, summarise, exit 5; a re-run finishes ----------


@SIGNALS
def test_a_signal_stops_submitting_collects_jobs_in_flight_and_exits_5(
    tmp_path: Path, signum: signal.Signals
) -> None:
    rows = corpus(200)
    texts = {r["id"]: r["text"] for r in rows}
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    layout = layout_for(out)
    first_json, second_json = tmp_path / "first.json", tmp_path / "second.json"
    with EmulatorProcess("--latency", "0.1-0.3", "--api-key", KEY, "--seed", "7") as emu:
        # 200 submits/s: the 200 texts take 1 s to submit, so the run is mid-flight.
        settings = ("--rpm", "12000", "--read-rate", "400", "--rows-per-part", "16")
        with CliRun(
            cli_command(source, out, emu.url, first_json, *settings), tmp_path / "first.err"
        ) as run:
            assert run.wait_until(lambda: journal_count(out, SUBMITTED_SQL) >= 30), run.stderr()
            at_signal = jobs_created(emu)
            run.send(signum)
            signalled = time.monotonic()
            code = run.wait()
            took = time.monotonic() - signalled
            stderr = run.stderr()
        after_exit = jobs_created(emu)
        time.sleep(0.3)
        assert jobs_created(emu) == after_exit  # nothing left behind still submitting
        print(signum.name, "jobs at the signal", at_signal, "at exit", after_exit, "took", took)

        assert code == 5, stderr
        assert stopping_line(signum) in stderr
        assert SUMMARY_LINE in stderr and INTERRUPTED_LINE in stderr
        assert_no_traceback(stderr)
        assert took < 10.0, took  # the grace period ended as soon as the jobs were collected
        # Submitting stopped at the signal: only the submits already on the wire went out
        # (unstopped, 200/s would have added dozens during the collection).
        assert 30 <= at_signal <= after_exit <= at_signal + 5, (at_signal, after_exit)
        assert after_exit < len(rows)

        # Every job the emulator created was collected: the latency (<= 0.3 s) is far
        # below the grace period, so each submitted text's row is in the output.
        assert journal_count(out, IN_FLIGHT_SQL) == 0
        assert journal_count(out, SUBMITTED_SQL) == after_exit
        assert assert_parquet_readable(out) == after_exit
        assert not list(layout.state_dir.rglob("*.tmp"))
        got = output_rows(layout)  # fails on a duplicated id
        assert len(got) == after_exit
        assert_vectors(got, texts)
        errors = error_rows(layout)
        assert {str(e["kind"]) for e in errors.values()} <= {"aborted"}
        assert not set(errors) & set(got)
        summary = read_summary(first_json)
        assert summary["outcome"] == "interrupted"
        assert summary["rows_embedded"] == after_exit
        assert (
            summary["rows_read"]
            == len(got) + len(errors)
            == (summary["rows_embedded"] + summary["rows_failed"] + summary["rows_skipped"])
        )

        # The same command again, unsignalled: every row exactly once, nothing paid twice.
        rerun = run_cli(cli_command(source, out, emu.url, second_json, *settings), KEY)
        stats = emu.stats()
    assert rerun.returncode == 0, rerun.stderr
    assert_no_traceback(rerun.stderr)
    resumed = read_summary(second_json)
    assert resumed["outcome"] == "completed"
    assert resumed["resumed_done"] == after_exit
    assert resumed["rows_embedded"] == len(rows) - after_exit
    assert stats["jobs_created"] == stats["distinct_texts"] == len(rows)
    assert stats["max_submits_per_text"] == 1
    got = output_rows(layout)
    assert set(got) == set(texts)
    assert_vectors(got, texts)
    assert error_rows(layout) == {}


# -- a second signal exits at once; the journal lets a re-run re-attach ----------------------

SLOW_LATENCY = "2.5-3"


def test_a_second_signal_exits_at_once_and_the_rerun_reattaches(tmp_path: Path) -> None:
    fast = 12  # these complete at once and are committed in parts of 4 before the signals
    texts = {
        i: f"row text {i} of the corpus" + (" [[slow:0.05]]" if i < fast else "") for i in range(60)
    }
    rows = [{"id": key, "text": text} for key, text in texts.items()]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    layout = layout_for(out)
    first_json, second_json = tmp_path / "first.json", tmp_path / "second.json"
    settings = ("--rpm", "6000", "--read-rate", "400", "--rows-per-part", "4")
    with EmulatorProcess("--latency", SLOW_LATENCY, "--api-key", KEY, "--seed", "8") as emu:
        with CliRun(
            cli_command(source, out, emu.url, first_json, *settings), tmp_path / "first.err"
        ) as run:

            def slow_jobs_in_flight() -> bool:
                return (
                    journal_count(out, DONE_SQL) >= fast and journal_count(out, IN_FLIGHT_SQL) >= 30
                )

            assert run.wait_until(slow_jobs_in_flight), run.stderr()
            run.send(signal.SIGINT)
            assert run.wait_until(lambda: stopping_line(signal.SIGINT) in run.stderr(), limit=5)
            time.sleep(0.1)  # mid-grace: the slow jobs need seconds more
            run.send(signal.SIGINT)
            signalled = time.monotonic()
            code = run.wait()
            took = time.monotonic() - signalled
            stderr = run.stderr()
        assert code == 5, stderr
        assert took < 1.5, took  # the rest of the grace period would be about 2 s
        assert SECOND_SIGNAL_LINE in stderr
        assert INTERRUPTED_LINE not in stderr  # it did not wait to write the summary
        assert_no_traceback(stderr)
        in_air = journal_count(out, IN_FLIGHT_SQL)
        unrecorded = journal_count(out, INTENT_SQL)
        print("exit after the second signal", took, "in flight", in_air, "intents", unrecorded)
        assert in_air >= 30  # the grace period was cut short: these were never collected
        committed = journal_count(out, DONE_SQL)
        assert committed >= fast
        assert_parquet_readable(out)
        parts = list(layout.parts_dir.glob("*.parquet"))
        assert parts, "the fast rows' parts should have been committed before the signals"
        created = jobs_created(emu)
        assert created == journal_count(out, SUBMITTED_SQL) + unrecorded

        # Re-run on the same emulator (it holds the jobs); texts never submitted are fast now.
        update_emulator(emu, latency=list(FAST))
        rerun = run_cli(cli_command(source, out, emu.url, second_json, *settings), KEY)
        stats = emu.stats()
        repeated = stat(emu, "texts_submitted_more_than_once")
    assert rerun.returncode == 0, rerun.stderr
    assert_no_traceback(rerun.stderr)
    resumed = read_summary(second_json)
    assert resumed["reattached"] == in_air
    assert resumed["resumed_done"] == committed
    assert resumed["resubmits"] == ({"unrecorded": unrecorded} if unrecorded else {})
    # Only texts that never had a job recorded were submitted by the re-run.
    assert stats["jobs_created"] == created + len(rows) - committed - in_air
    assert stats["distinct_texts"] == len(rows)
    assert repeated <= unrecorded  # 0 unless the second signal cut a submit short
    got = output_rows(layout)
    assert set(got) == set(texts)
    assert_vectors(got, texts)
    assert error_rows(layout) == {}


# -- a signal at the very start, before anything is submitted --------------------------------


@SIGNALS
def test_a_signal_before_any_submit_exits_5_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    # Thousands of whitespace-only texts first (error rows, nothing to submit), so the run is
    # reliably still reading when the journal appears and the signal arrives.
    blanks = 30_000
    rows = [{"id": i, "text": "   "} for i in range(blanks)] + corpus(10, start=blanks)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    layout = layout_for(out)
    summary_path = tmp_path / "summary.json"
    with EmulatorProcess("--latency", "0.02-0.1", "--api-key", KEY) as emu:
        with CliRun(cli_command(source, out, emu.url, summary_path), tmp_path / "run.err") as run:
            # The first error rows written: the run is reading (the journal exists before).
            assert run.wait_until(
                lambda: layout.errors.exists() and layout.errors.stat().st_size > 0
            ), run.stderr()
            run.send(signum)
            code = run.wait()
            stderr = run.stderr()
        stats = emu.stats()
    assert code == 5, stderr
    assert stopping_line(signum) in stderr
    assert SUMMARY_LINE in stderr and INTERRUPTED_LINE in stderr
    assert_no_traceback(stderr)
    credits = sum(stats["requests"]["credits"].values())  # the free balance, asked first
    assert stats["jobs_created"] == 0 and stats["requests_total"] == credits
    assert assert_parquet_readable(out) == 0
    if out.exists():
        assert output_rows(layout) == {}
    summary = read_summary(summary_path)
    print(signum.name, "rows read before the stop", summary["rows_read"])
    assert summary["outcome"] == "interrupted"
    assert summary["submits"] == 0 and summary["rows_embedded"] == 0
    assert 0 < summary["rows_read"] < len(rows)
    assert summary["rows_read"] == summary["rows_failed"] + summary["rows_skipped"]
    assert set(error_rows(layout)) <= set(range(blanks))


# A signal that arrives while the CLI is still starting, before the run's own handlers are in
# place (an --emulate run starts its emulator first): the same entry point, with the signal
# raised just before ``_install_signals`` runs, deterministically.
EARLY_SIGNAL = """\
import signal, sys
import batch_embed.cli as cli

install = cli._install_signals

def late(*args):
    signal.raise_signal(getattr(signal, sys.argv[1]))
    install(*args)

cli._install_signals = late
raise SystemExit(cli.main(sys.argv[2:]))
"""


def test_a_signal_before_the_handlers_are_installed_exits_5_cleanly(tmp_path: Path) -> None:
    rows = corpus(20)
    texts = {r["id"]: r["text"] for r in rows}
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.parquet"
    layout = layout_for(out)
    with EmulatorProcess("--latency", "0.02-0.1", "--api-key", KEY) as emu:
        command = cli_command(
            source, out, emu.url, tmp_path / "summary.json", "--rpm", "6000", "--read-rate", "400"
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            early = [sys.executable, "-c", EARLY_SIGNAL, signum.name, *command[3:]]
            first = run_cli(early, KEY)
            assert first.returncode == 5, (signum.name, first.returncode, first.stderr)
            assert_no_traceback(first.stderr)
            assert "batch-embed: interrupted" in first.stderr, (signum.name, first.stderr)
            # The run was cancelled before its stages could send anything (observed: no
            # request; at most the first submit could race the cancellation).
            assert jobs_created(emu) <= 1
            assert_parquet_readable(out)
        rerun = run_cli(command, KEY)
    assert rerun.returncode == 0, rerun.stderr
    got = output_rows(layout)
    assert set(got) == set(texts)
    assert_vectors(got, texts)
