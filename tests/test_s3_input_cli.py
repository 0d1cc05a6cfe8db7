"""Inputs in object storage, through the real CLI against a real S3 API: a moto server on
127.0.0.1, reached by pyarrow.fs from the standard environment (AWS_ENDPOINT_URL and the
AWS_* credentials), the emulator for the embedding API."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_embed.emulator import expected_vector
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, cli_env
from tests.s3_fixtures import SECRET, moto_s3, put

KEY = "sk-test-s3-0123456789"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with moto_s3("corpus") as server:
        fs = server.fs
        lines = [orjson.dumps({"id": i, "text": f"s3 text {i}"}) for i in range(6)]
        put(fs, "corpus/day1/a.jsonl", b"\n".join(lines[:3]) + b"\n")
        put(fs, "corpus/day1/b.jsonl.gz", gzip.compress(b"\n".join(lines[3:]) + b"\n"))
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"id": [6, 7], "text": ["s3 text 6", "s3 text 7"]}), sink)
        put(fs, "corpus/day1/c.parquet", sink.getvalue().to_pybytes())
        put(fs, "corpus/day1/_tmp/partial.jsonl", b'{"id": 99, "text": "never read"}\n')
        put(fs, "corpus/notes.txt", b"not an input")
        yield server.env


def run(s3: dict[str, str], emu: EmulatorProcess, out: Path | str, *inputs: str) -> Any:
    env = cli_env(KEY) | s3
    command = batch_embed_cli("run", *inputs, "--output", out, "--base-url", emu.url, *FAST)
    command.append("--quiet")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--latency", "0") as process:
        yield process


def vectors(out: Path) -> dict[int, np.ndarray[Any, Any]]:
    table = pq.read_table(out)
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return dict(zip(table.column("id").to_pylist(), flat.reshape(table.num_rows, -1), strict=True))


def test_a_prefix_of_jsonl_gzip_and_parquet_is_read_as_a_directory(
    s3: dict[str, str], emu: EmulatorProcess, tmp_path: Path
) -> None:
    out = tmp_path / "v.parquet"
    before = int(emu.stats()["jobs_created"])  # type: ignore[call-overload]
    done = run(s3, emu, out, "s3://corpus/day1/")
    assert done.returncode == 0, done.stderr
    found = vectors(out)
    assert sorted(found) == list(range(8))  # _tmp/ skipped like pyarrow.dataset skips it
    for i, vector in found.items():
        np.testing.assert_allclose(vector, expected_vector(f"s3 text {i}", 3072), rtol=1e-6)
    assert int(emu.stats()["jobs_created"]) - before == 8  # type: ignore[call-overload]
    again = run(s3, emu, out, "s3://corpus/day1/")
    assert again.returncode == 0, again.stderr
    assert int(emu.stats()["jobs_created"]) - before == 8  # type: ignore[call-overload]
    assert SECRET not in done.stderr + again.stderr


def test_a_glob_and_a_single_object(
    s3: dict[str, str], emu: EmulatorProcess, tmp_path: Path
) -> None:
    out = tmp_path / "v.parquet"
    done = run(s3, emu, out, "s3://corpus/day1/*.jsonl*", "s3://corpus/day1/c.parquet")
    assert done.returncode == 0, done.stderr
    assert sorted(vectors(out)) == list(range(8))


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("s3://corpus/nothing/", "s3://corpus/nothing/: no such file, prefix or bucket"),
        ("s3://corpus/day1/*.csv", "s3://corpus/day1/*.csv: holds no input files"),
        ("s3://corpus/notes.txt", "s3://corpus/notes.txt: unknown file type"),
    ],
)
def test_a_missing_or_wrong_object_is_exit_2_before_any_call(
    s3: dict[str, str], emu: EmulatorProcess, tmp_path: Path, name: str, says: str
) -> None:
    before = int(emu.stats()["requests_total"])  # type: ignore[call-overload]
    done = run(s3, emu, tmp_path / "v.parquet", name)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert int(emu.stats()["requests_total"]) == before  # type: ignore[call-overload]
    assert SECRET not in done.stderr
