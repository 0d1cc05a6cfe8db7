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
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from batch_embed.emulator import expected_vector
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, cli_env

SECRET = "s3-secret-key-not-to-be-printed-42"
KEY = "sk-test-s3-0123456789"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test-access",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    fs = pafs.S3FileSystem(
        access_key="test-access",
        secret_key=SECRET,
        region="us-east-1",
        endpoint_override=env["AWS_ENDPOINT_URL"],
        allow_bucket_creation=True,
    )
    fs.create_dir("corpus")
    lines = [orjson.dumps({"id": i, "text": f"s3 text {i}"}) for i in range(6)]
    put(fs, "corpus/day1/a.jsonl", b"\n".join(lines[:3]) + b"\n")
    put(fs, "corpus/day1/b.jsonl.gz", gzip.compress(b"\n".join(lines[3:]) + b"\n"))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": [6, 7], "text": ["s3 text 6", "s3 text 7"]}), sink)
    put(fs, "corpus/day1/c.parquet", sink.getvalue().to_pybytes())
    put(fs, "corpus/day1/_tmp/partial.jsonl", b'{"id": 99, "text": "never read"}\n')
    put(fs, "corpus/notes.txt", b"not an input")
    yield env
    server.stop()


def put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path, compression=None) as out:
        out.write(data)


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


def test_an_output_in_object_storage_is_refused_for_now(
    s3: dict[str, str], emu: EmulatorProcess
) -> None:
    done = run(s3, emu, "s3://corpus/out/v.parquet", "s3://corpus/day1/")
    assert done.returncode == 2
    assert "outputs go to a local path" in done.stderr
