"""A full disk, as a user meets it: the run stops with exit 7 and one line naming the file,
and a run after space is freed pays nothing extra.

The disk is "full" without root: the CLI runs in a child process with RLIMIT_FSIZE set
(Python ignores SIGXFSZ, so a write past the limit fails with EFBIG). Paid calls are counted
at the emulator (``jobs_created``).
"""

from __future__ import annotations

import errno
import resource
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from batch_embed.errors import WriteFailed
from batch_embed.write_failures import write_failure, writing
from tests.cli_fixtures import EmulatorProcess, batch_embed_cli, cli_env
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-full-disk-0123456789"
ROWS = 600


@pytest.fixture
def emu() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0.05-0.2") as process:
        yield process  # type: ignore[misc]


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def limited(size: int | None) -> Callable[[], None] | None:
    if size is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def run(
    source: Path, out: Path, url: str, *extra: str, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    budget = ("--rpm", "30000", "--read-rate", "2000")
    command = batch_embed_cli(
        "run", source, "--output", out, "--base-url", url, *budget, "--quiet", *extra
    )
    return subprocess.run(
        command,
        env=cli_env(KEY),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited(fsize),
    )


def corpus(tmp_path: Path) -> Path:
    # A duplicate text in every ten rows: paid calls are the distinct texts.
    records = [
        {"id": i, "text": f"full disk text {i - i % 10 if i % 10 == 9 else i}"} for i in range(ROWS)
    ]
    return write_jsonl(tmp_path / "in.jsonl", records)


def distinct(source: Path) -> int:
    return len({line.split(b'"text":')[1] for line in source.read_bytes().splitlines()})


def assert_one_line(stderr: str, path: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"batch-embed: error: could not write {path}"), stderr
    assert "free space and run again" in lines[0]
    assert KEY not in stderr


def assert_every_row_once(out: Path) -> None:
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == list(range(ROWS))


@pytest.mark.parametrize(
    ("case", "extra", "fsize", "path"),
    [
        # A part of 512 rows is ~6.3 MB: the first part commit fails (the journal's WAL
        # stays under 4 MB: SQLite checkpoints it at 1000 pages).
        (
            "part",
            ("--rows-per-part", "512"),
            5_000_000,
            "vectors.parquet.batch_embed/parts/part-000000.parquet",
        ),
        # Parts of 4 rows are ~50 KB; the journal's WAL outgrows 1 MB first.
        (
            "journal",
            ("--rows-per-part", "4"),
            1_000_000,
            "vectors.parquet.batch_embed/journal.sqlite",
        ),
        # Every part fits; the merged file at the end does not.
        ("merge", ("--rows-per-part", "64"), 5_000_000, "vectors.parquet"),
    ],
)
def test_a_full_disk_stops_the_run_with_exit_7_and_the_rerun_pays_nothing_extra(
    emu: EmulatorProcess,
    tmp_path: Path,
    case: str,
    extra: tuple[str, ...],
    fsize: int,
    path: str,
) -> None:
    source = corpus(tmp_path)
    out = tmp_path / "vectors.parquet"
    full = run(source, out, emu.url, *extra, fsize=fsize)
    assert full.returncode == 7, full.stderr
    assert_one_line(full.stderr, str(tmp_path / path))
    paid = billed(emu)
    assert 0 < paid <= distinct(source)
    summary = tmp_path / "summary.json"
    freed = run(source, out, emu.url, *extra, "--summary-json", str(summary))
    assert freed.returncode == 0, freed.stderr
    resubmits = orjson.loads(summary.read_bytes())["resubmits"]
    again = resubmits.get("unrecorded", 0)
    if case == "journal":
        # The request_ids answered after the journal's last commit could not be recorded:
        # those few texts are submitted again, and the summary counts them.
        assert again <= 8
    else:
        assert resubmits == {}
    # The re-run paid only for what was never paid (or never recorded as paid).
    assert billed(emu) == distinct(source) + again
    assert_every_row_once(out)


def test_a_full_disk_under_a_directory_output(emu: EmulatorProcess, tmp_path: Path) -> None:
    source = corpus(tmp_path)
    out = tmp_path / "vectors"
    full = run(source, out, emu.url, "--rows-per-part", "512", fsize=5_000_000)
    assert full.returncode == 7, full.stderr
    assert_one_line(full.stderr, str(out / "part-000000.parquet"))
    freed = run(source, out, emu.url, "--rows-per-part", "512")
    assert freed.returncode == 0, freed.stderr
    assert billed(emu) == distinct(source)
    assert_every_row_once(out)


def test_writing_names_the_file_and_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed) as caught, writing(tmp_path / "x.parquet"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == f"could not write {tmp_path / 'x.parquet'}: " + (
        "No space left on device (ENOSPC)"
    )
    with pytest.raises(WriteFailed) as caught, writing("part.parquet"):
        raise OSError("[Errno 27] File too large")  # how pyarrow raises it: no errno set
    assert caught.value.reason == "[Errno 27] File too large"


def test_write_failure_finds_the_failure_in_groups_and_chains(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    full = sqlite3.OperationalError("database or disk is full")
    found = write_failure(ExceptionGroup("stages", [ValueError("x"), full]), journal)
    assert found is not None and found.path == str(journal)
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "e.jsonl"))
        except OSError as err:
            raise RuntimeError("while closing") from err
    except RuntimeError as chained:
        found = write_failure(chained, journal)
    assert found is not None and found.path == str(tmp_path / "e.jsonl")
    assert found.reason == "Read-only file system (EROFS)"
    assert write_failure(ValueError("not a write"), journal) is None
    assert write_failure(sqlite3.OperationalError("no such table: texts"), journal) is None
