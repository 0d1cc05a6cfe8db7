"""Outputs in object storage, through the real CLI against a real S3 API (a moto server on
127.0.0.1) and the emulator: a prefix of parts and a single file, the journal in the user's
cache, a kill and a resume, a lost journal that costs nothing, read back with pyarrow.dataset
and DuckDB."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from batch_embed.emulator import expected_vector
from batch_embed.layout import default_state_dir, layout_for
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, cli_env
from tests.s3_fixtures import S3, SECRET, get, moto_s3, names, put

KEY = "sk-test-s3-out-0123456789"
DIM = 3072


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3("corpus", "vectors") as server:
        yield server


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--latency", "0") as process:
        yield process


def corpus(s3: S3, path: str, texts: dict[int, str]) -> str:
    lines = [orjson.dumps({"id": i, "text": t}) for i, t in texts.items()]
    put(s3.fs, path, b"\n".join(lines) + b"\n")
    return f"s3://{path}"


def env_for(s3: S3, cache: Path) -> dict[str, str]:
    return cli_env(KEY) | s3.env | {"XDG_CACHE_HOME": str(cache)}


def command(emu: EmulatorProcess, out: str, *inputs: str, extra: tuple[str, ...] = ()) -> list[str]:
    return batch_embed_cli(
        "run", *inputs, "--output", out, "--id-field", "id", "--base-url", emu.url, *FAST, *extra
    )


def run(
    s3: S3, emu: EmulatorProcess, cache: Path, out: str, *inputs: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(emu, out, *inputs, extra=extra), "--quiet"],
        env=env_for(s3, cache),
        capture_output=True,
        text=True,
        timeout=120,
    )


def paid(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def parts(s3: S3, prefix: str) -> list[str]:
    """The published part files under ``prefix``: not the hidden ``_part-*.tmp`` a write in
    progress holds, which a count of every object would take for a part and then lose."""
    return [n for n in names(s3.fs, prefix) if n.startswith("part-") and n.endswith(".parquet")]


def read_vectors(s3: S3, path: str) -> dict[int, np.ndarray[Any, Any]]:
    table = pads.dataset(path, filesystem=s3.fs, format="parquet").to_table()
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a row is in the output twice"
    return dict(zip(ids, flat.reshape(table.num_rows, -1), strict=True))


def assert_vectors(found: dict[int, np.ndarray[Any, Any]], texts: dict[int, str]) -> None:
    assert sorted(found) == sorted(texts)
    for i, vector in found.items():
        np.testing.assert_allclose(vector, expected_vector(texts[i], DIM), rtol=1e-6)


def test_a_prefix_output_gets_parts_and_a_second_night_pays_only_the_change(
    s3: S3, emu: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    texts = {i: f"night text {i}" for i in range(40)}
    source = corpus(s3, "corpus/nightly/day.jsonl", texts)
    out = "s3://vectors/nightly"
    before = paid(emu)
    first = run(s3, emu, tmp_path, out, source, extra=("--rows-per-part", "16"))
    assert first.returncode == 0, first.stderr
    assert paid(emu) - before == 40
    stored = names(s3.fs, "vectors/nightly")
    assert stored == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert_vectors(read_vectors(s3, "vectors/nightly"), texts)
    # The journal is on local disk, in the user's cache, keyed by the output's URI.
    state = default_state_dir(out)
    assert str(state).startswith(str(tmp_path))
    assert (state / "journal.sqlite").exists()
    assert not list((state / "parts").glob("*.parquet"))  # every part was published

    texts[3] = "night text 3, changed"
    texts[40] = "night text 40, new"
    corpus(s3, "corpus/nightly/day.jsonl", texts)
    # What a run killed at the wrong moments leaves: an upload never moved to its name,
    # and a part uploaded but still staged locally. Neither may reach the output twice.
    put(s3.fs, "vectors/nightly/_part-000003.parquet.0123456789ab.tmp", b"half an upload")
    (state / "parts" / "part-000007.parquet").write_bytes(
        get(s3.fs, "vectors/nightly/part-000001.parquet")
    )
    second = run(s3, emu, tmp_path, out, source, extra=("--rows-per-part", "16"))
    assert second.returncode == 0, second.stderr
    assert paid(emu) - before == 42
    assert_vectors(read_vectors(s3, "vectors/nightly"), texts)  # the old vector of 3 is gone
    assert not any(name.startswith("_") for name in names(s3.fs, "vectors/nightly"))
    assert not list((state / "parts").glob("*.parquet"))

    # The journal lost: the output is the record, and nothing is paid again.
    shutil.rmtree(state)
    third = run(s3, emu, tmp_path, out, source)
    assert third.returncode == 0, third.stderr
    assert paid(emu) - before == 42
    assert_vectors(read_vectors(s3, "vectors/nightly"), texts)
    plan = subprocess.run(
        batch_embed_cli("plan", source, "--output", out, "--id-field", "id"),
        env=env_for(s3, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plan.returncode == 0, plan.stderr
    assert "rows read 41: new 0, changed 0, unchanged 41" in plan.stdout + plan.stderr
    # DuckDB reads the output through pyarrow's S3 dataset.
    dataset = pads.dataset("vectors/nightly", filesystem=s3.fs, format="parquet")  # noqa: F841
    counted = duckdb.sql("SELECT count(*), count(DISTINCT id) FROM dataset").fetchall()
    assert counted == [(41, 41)]
    for done in (first, second, third):
        assert SECRET not in done.stderr and KEY not in done.stderr


def test_a_single_file_output_is_replaced_whole_and_errors_go_beside_it(
    s3: S3, emu: EmulatorProcess, tmp_path: Path
) -> None:
    texts = {0: "one file a", 1: "one file b", 2: "[[blocked]] one file c"}
    source = corpus(s3, "corpus/single/day.jsonl", texts)
    out = "s3://vectors/single/vectors.parquet"
    before = paid(emu)
    first = run(s3, emu, tmp_path, out, source)
    assert first.returncode == 3, first.stderr  # a row failed
    assert names(s3.fs, "vectors/single") == ["vectors.errors.jsonl", "vectors.parquet"]
    table = pq.read_table("vectors/single/vectors.parquet", filesystem=s3.fs)
    assert sorted(table.column("id").to_pylist()) == [0, 1]
    errors = [
        orjson.loads(line)
        for line in get(s3.fs, "vectors/single/vectors.errors.jsonl").splitlines()
    ]
    assert [e["id"] for e in errors] == [2]
    texts[1] = "one file b, changed"
    corpus(s3, "corpus/single/day.jsonl", texts)
    paid_first = paid(emu) - before
    second = run(s3, emu, tmp_path, out, source)
    assert second.returncode == 3, second.stderr
    assert paid(emu) - before == paid_first + 1
    table = pq.read_table("vectors/single/vectors.parquet", filesystem=s3.fs)
    found = dict(
        zip(
            table.column("id").to_pylist(),
            table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM),
            strict=True,
        )
    )
    assert_vectors(found, {0: texts[0], 1: texts[1]})
    status = subprocess.run(
        [*batch_embed_cli("status", out), "--json"],
        env=env_for(s3, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["output_rows"] == 2


def test_a_killed_run_resumes_into_the_same_prefix_with_every_row_once(
    s3: S3, tmp_path: Path
) -> None:
    texts = {i: f"killed text {i}" for i in range(240)}
    source = corpus(s3, "corpus/killed/day.jsonl", texts)
    out = "s3://vectors/killed"
    extra = ("--rows-per-part", "8", "--max-in-flight", "16", "--rpm", "3000")
    with EmulatorProcess("--latency", "0.2-0.6", "--api-key", KEY, "--seed", "3") as emu:
        proc = subprocess.Popen(
            command(emu, out, source, extra=extra),
            env=env_for(s3, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(parts(s3, "vectors/killed")) < 3:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        published = len(parts(s3, "vectors/killed"))
        assert 3 <= published < 30, published  # killed in the middle
        done = run(s3, emu, tmp_path, out, source, extra=extra)
        assert done.returncode == 0, done.stderr
        stats = emu.stats()
    assert_vectors(read_vectors(s3, "vectors/killed"), texts)
    assert stats["distinct_texts"] == len(texts)
    # Jobs already submitted were re-attached: at most the few whose request_id was not
    # yet written when the kill came are paid twice.
    assert int(stats["jobs_created"]) - len(texts) <= 16  # type: ignore[call-overload]


def test_an_output_prefix_inside_the_input_prefix_is_left_out_of_it(
    s3: S3, emu: EmulatorProcess, tmp_path: Path
) -> None:
    texts = {i: f"shared prefix {i}" for i in range(5)}
    corpus(s3, "corpus/shared/in.jsonl", texts)
    out = "s3://corpus/shared/vectors"
    before = paid(emu)
    for _ in range(2):
        done = run(s3, emu, tmp_path, out, "s3://corpus/shared/")
        assert done.returncode == 0, done.stderr
    assert paid(emu) - before == 5
    assert_vectors(read_vectors(s3, "corpus/shared/vectors"), texts)


@pytest.mark.parametrize(
    ("output", "inputs", "says"),
    [
        ("s3://corpus/refused/in.parquet", ["s3://corpus/refused/in.parquet"], "is the output"),
        ("s3://corpus/refused", ["s3://corpus/refused/sub/"], "is the output directory"),
        ("s3://corpus/refused/v.parquet", ["s3://corpus/refused/*.parquet"], "is the output"),
    ],
)
def test_an_output_that_is_an_input_is_refused_before_any_call(
    s3: S3, emu: EmulatorProcess, tmp_path: Path, output: str, inputs: list[str], says: str
) -> None:
    put(s3.fs, "corpus/refused/sub/in.jsonl", b'{"id": 1, "text": "x"}\n')
    before = int(emu.stats()["requests_total"])  # type: ignore[call-overload]
    done = run(s3, emu, tmp_path, output, *inputs)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert int(emu.stats()["requests_total"]) == before  # type: ignore[call-overload]


@pytest.mark.parametrize("output", ["s3://no-such-bucket/vectors", "s3://no-such-bucket/v.parquet"])
def test_an_output_that_cannot_be_written_is_refused_before_any_call(
    s3: S3, emu: EmulatorProcess, tmp_path: Path, output: str
) -> None:
    source = corpus(s3, "corpus/unwritable/in.jsonl", {1: "never paid for"})
    before = int(emu.stats()["requests_total"])  # type: ignore[call-overload]
    done = run(s3, emu, tmp_path, output, source)
    assert done.returncode == 2, done.stderr
    assert f"output {output}" in done.stderr and "cannot be written" in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr
    assert int(emu.stats()["requests_total"]) == before  # type: ignore[call-overload]


def test_the_state_dir_must_be_local(s3: S3, emu: EmulatorProcess, tmp_path: Path) -> None:
    source = corpus(s3, "corpus/state/in.jsonl", {1: "x"})
    done = run(s3, emu, tmp_path, "s3://vectors/state", source, extra=("--state-dir", "s3://b/x"))
    assert done.returncode == 2
    assert "the state directory must be a local path" in done.stderr


@pytest.mark.parametrize("where", ["input", "output", "errors", "env"])
def test_credentials_in_a_uri_are_refused_and_never_shown(
    s3: S3, emu: EmulatorProcess, tmp_path: Path, where: str
) -> None:
    secret_uri = f"s3://test-access:{SECRET}@corpus/creds/in.jsonl"
    source, out = "s3://corpus/creds/in.jsonl", "s3://vectors/creds"
    corpus(s3, "corpus/creds/in.jsonl", {1: "x"})
    extra: tuple[str, ...] = ()
    env = env_for(s3, tmp_path)
    if where == "input":
        source = secret_uri
    elif where == "output":
        out = f"s3://test-access:{SECRET}@vectors/creds"
    elif where == "errors":
        extra = ("--errors", f"s3://test-access:{SECRET}@vectors/creds.errors.jsonl")
    else:
        env["BATCH_EMBED_OUTPUT"] = f"s3://test-access:{SECRET}@vectors/creds"
    cmd = command(emu, out, source, extra=extra)
    if where == "env":
        cmd.remove("--output")
        cmd.remove(out)
    before = int(emu.stats()["requests_total"])  # type: ignore[call-overload]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "credentials in a URI are refused" in done.stderr
    assert SECRET not in done.stderr + done.stdout and "s3://***@" in done.stderr
    assert int(emu.stats()["requests_total"]) == before  # type: ignore[call-overload]


def test_outputs_are_written_without_background_uploads(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow's default queues every part of an upload in memory while the writer outruns
    # the store (benchmarks/s3_output.py: +36 MB per 10k rows of a single-file output).
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    layout = layout_for("s3://vectors/bg/out.parquet", "s3://vectors/bg/errors.jsonl")
    for file in layout.remote_targets():
        assert file.fs is not None
        options = file.fs.__reduce__()[1][0]
        assert options["background_writes"] is False
        assert options["endpoint_override"] == s3.env["AWS_ENDPOINT_URL"]
