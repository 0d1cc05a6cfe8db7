"""The output never overlaps the input: refusals before any request, and the run's own files
left out of an input directory (``run data/ --output data/vectors.parquet`` night after night).

Requests are counted at the emulator (``requests_total``): a refusal makes none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch_embed.overlap import glob_regex
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, run_cli
from tests.pipeline_fixtures import write_jsonl, write_parquet

KEY = "sk-test-overlap-0123456789"


@pytest.fixture(scope="module")
def emu() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0") as process:
        yield process  # type: ignore[misc]


def batch_embed(verb: str, *args: str | Path, url: str) -> list[str]:
    return batch_embed_cli(verb, *args, "--base-url", url, *FAST, "--quiet")


def requests(emu: EmulatorProcess) -> int:
    return int(emu.stats()["requests_total"])  # type: ignore[call-overload]


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def corpus(directory: Path, n: int = 6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "a.jsonl", [{"id": i, "text": f"overlap text {i}"} for i in range(n)])
    return directory


def refused(emu: EmulatorProcess, *args: str | Path, verb: str = "run") -> str:
    """Run ``verb args``; assert exit 2, no request, no traceback; return stderr."""
    before = requests(emu)
    done = run_cli(batch_embed(verb, *args, url=emu.url), KEY)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert requests(emu) == before
    assert KEY not in done.stderr + done.stdout
    return done.stderr


@pytest.mark.parametrize("verb", ["run", "plan"])
def test_output_equal_to_an_input_file_is_refused(
    emu: EmulatorProcess, tmp_path: Path, verb: str
) -> None:
    records = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]
    source = write_parquet(tmp_path / "in.parquet", records)
    before = source.read_bytes()
    err = refused(emu, source, "--output", source, verb=verb)
    assert f"input {source} is the output {source}" in err
    assert source.read_bytes() == before
    assert not (tmp_path / "in.parquet.batch_embed").exists()


def test_output_directory_equal_to_the_input_directory_is_refused(
    emu: EmulatorProcess, tmp_path: Path
) -> None:
    data = corpus(tmp_path / "data")
    err = refused(emu, data, "--output", data)
    assert f"input directory {data} is or lies in the output directory {data}" in err
    assert sorted(p.name for p in data.iterdir()) == ["a.jsonl"]


def test_same_place_spelled_two_ways_is_one_place(emu: EmulatorProcess, tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    (tmp_path / "link").symlink_to(data)
    err = refused(emu, tmp_path / "link", "--output", f"{data}/../data/")
    assert "is or lies in the output directory" in err


def test_input_inside_the_output_directory_is_refused(emu: EmulatorProcess, tmp_path: Path) -> None:
    data = corpus(tmp_path / "out" / "in")
    err = refused(emu, data, "--output", tmp_path / "out")
    assert f"input directory {data} is or lies in the output directory" in err


def test_errors_path_that_is_an_input_is_refused(emu: EmulatorProcess, tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    source = data / "a.jsonl"
    before = source.read_bytes()
    err = refused(emu, source, "--output", tmp_path / "v.parquet", "--errors", source)
    assert f"input {source} is the errors file {source}" in err
    assert source.read_bytes() == before


def test_journal_directory_as_input_is_refused(emu: EmulatorProcess, tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    state = corpus(tmp_path / "v.parquet.batch_embed")
    err = refused(emu, state, "--output", out)
    assert f"is or lies in the journal directory {state}" in err


@pytest.mark.parametrize("pattern", ["*.parquet", "**/*.parquet", "v*"])
def test_glob_matching_the_output_is_refused_before_it_exists(
    emu: EmulatorProcess, tmp_path: Path, pattern: str
) -> None:
    write_parquet(tmp_path / "in.parquet", [{"id": 1, "text": "a"}])
    out = tmp_path / "vectors.parquet"
    err = refused(emu, tmp_path / pattern, "--output", out)
    assert f"input pattern {tmp_path / pattern} matches the output {out}" in err


def test_glob_matching_the_errors_file_is_refused(emu: EmulatorProcess, tmp_path: Path) -> None:
    corpus(tmp_path)
    err = refused(emu, tmp_path / "*.jsonl", "--output", tmp_path / "v.parquet")
    assert f"matches the errors file {tmp_path / 'v.errors.jsonl'}" in err


def test_output_file_inside_the_input_directory_works_night_after_night(
    emu: EmulatorProcess, tmp_path: Path
) -> None:
    data = corpus(tmp_path / "data", n=8)
    out = data / "vectors.parquet"
    command = batch_embed("run", data, "--output", out, url=emu.url)
    paid = billed(emu)
    first = run_cli(command, KEY)
    assert first.returncode == 0, first.stderr
    assert billed(emu) - paid == 8
    # A row that fails leaves an errors file in the input directory, too.
    with open(data / "a.jsonl", "ab") as more:
        more.write(b'{"id": 99, "text": ""}\n')
    second = run_cli(command, KEY)
    assert second.returncode == 3, second.stderr
    assert (data / "vectors.errors.jsonl").exists()
    third = run_cli(command, KEY)
    assert third.returncode == 3, third.stderr
    assert billed(emu) - paid == 8  # the second and third nights paid nothing
    table = pq.read_table(out)
    assert sorted(table.column("id").to_pylist()) == list(range(8))


def test_directory_output_inside_the_input_directory_is_left_out(
    emu: EmulatorProcess, tmp_path: Path
) -> None:
    data = corpus(tmp_path / "data", n=5)
    out = data / "vectors"
    command = batch_embed("run", data, "--output", out, url=emu.url)
    paid = billed(emu)
    for _ in range(2):
        done = run_cli(command, KEY)
        assert done.returncode == 0, done.stderr
    assert billed(emu) - paid == 5
    ids = [i for part in sorted(out.glob("part-*.parquet")) for i in pq.read_table(part)["id"]]
    assert sorted(i.as_py() for i in ids) == list(range(5))


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("/d/*.parquet", "/d/v.parquet", True),
        ("/d/*.parquet", "/d/sub/v.parquet", False),
        ("/d/**/*.parquet", "/d/v.parquet", True),
        ("/d/**/*.parquet", "/d/a/b/v.parquet", True),
        ("/d/**", "/d/a/v.parquet", True),
        ("/d/v?.parquet", "/d/v1.parquet", True),
        ("/d/[!x]*.jsonl", "/d/x.jsonl", False),
        ("/d/[ab].jsonl", "/d/b.jsonl", True),
        ("/d/a+b(1).jsonl", "/d/a+b(1).jsonl", True),
    ],
)
def testglob_regex_matches_as_glob_does(pattern: str, path: str, matched: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(path)) is matched
    assert os.sep == "/"
