"""``batch-embed run --engine ray`` end to end: the real CLI in a subprocess, its own local
Ray, an emulator process on 127.0.0.1.

Each run starts Ray (about 5 s), so the corpora are small and the runs few: one test takes
a corpus through a first run, a re-run, a killed write's leftovers, a grown corpus and a
changed text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from batch_embed.emulator import expected_vector
from batch_embed.models import DEFAULT_MODEL, model_spec
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, cli_env
from tests.s3_fixtures import S3, moto_s3, put

pytest.importorskip("ray")

KEY = "sk-raycli-do-not-print-7f1e"
DIM = model_spec(DEFAULT_MODEL).output_dim
EMULATOR = ("--api-key", KEY, "--latency", "0.05", "--submit-limit", "200/s", "--seed", "3")


def write_corpus(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def corpus(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Rows ``start`` to ``n``; below 30, every 7th has an empty text (a bad_input error
    that pays nothing)."""
    return [
        {"id": i, "text": "" if i % 7 == 3 and i < 30 else f"ray row {i}"} for i in range(start, n)
    ]


def ray_run(
    inputs: list[str | Path],
    out: str | Path,
    url: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = batch_embed_cli(
        "run", *inputs, "--output", out, "--engine", "ray", "--base-url", url, *FAST, *extra
    )
    return subprocess.run(
        command, env={**cli_env(KEY), **(env or {})}, capture_output=True, text=True, timeout=90
    )


def submits(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def read_dir(path: Path | str, filesystem: Any = None) -> pa.Table:
    return pads.dataset(str(path), format="parquet", filesystem=filesystem).to_table()


def check_vectors(table: pa.Table, texts: dict[int, str]) -> None:
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "one vector row per id"
    vectors = np.asarray(table["embedding"].to_pylist(), dtype=np.float32)
    for row, key in enumerate(ids):
        np.testing.assert_allclose(vectors[row], expected_vector(texts[key], DIM), rtol=1e-6)


def test_every_row_once_a_rerun_pays_nothing_and_a_grown_corpus_pays_its_growth(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "corpus.jsonl", tmp_path / "vectors"
    rows = corpus(30)
    write_corpus(source, rows)
    texts = {r["id"]: r["text"] for r in rows}
    with EmulatorProcess(*EMULATOR, "--fail-rate", "0.15") as emu:
        first = ray_run([source], out, emu.url)
        assert first.returncode == 3, first.stderr  # some rows failed
        vectors, errors = read_dir(out), read_dir(tmp_path / "vectors.errors")
        assert sorted(vectors.column_names) == ["embedding", "id", "text_sha256"]
        assert vectors.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
        check_vectors(vectors, texts)
        failed = errors.to_pylist()
        assert {e["error_kind"] for e in failed} == {"bad_input", "failed"}
        assert all(e["error"] for e in failed)
        assert sorted(vectors["id"].to_pylist() + [e["id"] for e in failed]) == list(range(30))
        paid = submits(emu)
        assert paid == 30 - sum(1 for r in rows if not r["text"])

        # A write killed midway leaves a file with no footer: removed, nothing paid again.
        (out / "run-00000000T000000Z-killed").mkdir()
        (out / "run-00000000T000000Z-killed" / "part.parquet").write_bytes(b"PAR1 trunc")
        again = ray_run([source], out, emu.url)
        assert again.returncode == 3, again.stderr  # the content failures are kept
        assert submits(emu) == paid
        assert "not a readable Parquet file" in again.stderr
        assert not (out / "run-00000000T000000Z-killed" / "part.parquet").exists()
        assert read_dir(out).num_rows == vectors.num_rows
        assert read_dir(tmp_path / "vectors.errors").num_rows == len(failed)

        grown = corpus(35)
        write_corpus(source, grown)
        texts = {r["id"]: r["text"] for r in grown}
        third = ray_run([source], out, emu.url, "--log-format", "json")
        assert third.returncode == 3, third.stderr
        assert submits(emu) == paid + 5
        summary = [json.loads(line) for line in third.stderr.splitlines() if line.startswith("{")]
        assert summary[-1]["event"] == "summary"
        assert summary[-1]["rows_embedded"] + summary[-1]["rows_failed"] >= 5
        final = read_dir(out)
        check_vectors(final, texts)
        final_errors = read_dir(tmp_path / "vectors.errors").to_pylist()
        covered = sorted(final["id"].to_pylist() + [e["id"] for e in final_errors])
        assert covered == list(range(35)), "every input row once: a vector or an error"
    for run in (first, again, third):
        assert KEY not in run.stdout + run.stderr
        assert "Progress bars" not in run.stderr and "INFO" not in run.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_missing_field_is_refused_before_any_call(tmp_path: Path) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, [{"id": 1, "body": "no text field here"}])
    with EmulatorProcess(*EMULATOR) as emu:
        result = ray_run([source], tmp_path / "out", emu.url)
        assert result.returncode == 2, result.stderr
        assert str(source) in result.stderr and "'text'" in result.stderr
        assert submits(emu) == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--fresh",), "--fresh does not apply to --engine ray"),
        (("--max-submits", "3"), "--max-submits does not apply"),
        (("--id-field", "nope"), "'nope'"),
    ],
)
def test_flags_it_cannot_honour_are_refused(
    tmp_path: Path, extra: tuple[str, ...], words: str
) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, corpus(3))
    result = ray_run([source], tmp_path / "out", "http://127.0.0.1:9", *extra)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_single_file_output_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, corpus(3))
    result = ray_run([source], tmp_path / "out.parquet", "http://127.0.0.1:9")
    assert result.returncode == 2 and "not one .parquet file" in result.stderr


def test_inputs_and_output_in_object_storage(tmp_path: Path) -> None:
    rows = corpus(12)
    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    with moto_s3("corpus", "vectors") as s3, EmulatorProcess(*EMULATOR) as emu:
        write_parquet(s3, "corpus/night/part-0.parquet", table.slice(0, 6))
        write_parquet(s3, "corpus/night/part-1.parquet", table.slice(6))
        result = ray_run(["s3://corpus/night"], "s3://vectors/emb", emu.url, env=s3.env)
        assert result.returncode == 3, result.stderr
        check_vectors(read_dir("vectors/emb", s3.fs), {r["id"]: r["text"] for r in rows})
        errors = read_dir("vectors/emb.errors", s3.fs)
        assert sorted(errors["id"].to_pylist()) == [r["id"] for r in rows if not r["text"]]
        paid = submits(emu)
        first_six = [r["text"] for r in rows[:6]]
        edited = pa.table({"id": list(range(6)), "text": ["ray row 0, edited", *first_six[1:]]})
        write_parquet(s3, "corpus/night/part-0.parquet", edited)
        again = ray_run(["s3://corpus/night"], "s3://vectors/emb", emu.url, env=s3.env)
        assert again.returncode == 3, again.stderr
        assert submits(emu) == paid + 1  # the edited row only
        texts = {r["id"]: r["text"] for r in rows} | {0: "ray row 0, edited"}
        check_vectors(read_dir("vectors/emb", s3.fs), texts)  # its old row is gone
        assert "s3-secret" not in result.stderr + again.stderr


def write_parquet(s3: S3, path: str, table: pa.Table) -> None:
    import io

    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    put(s3.fs, path, sink.getvalue())


def test_without_ray_installed_the_engine_is_a_one_line_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, corpus(3))
    no_ray = (
        "import sys; sys.modules['ray'] = None; from batch_embed.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", no_ray, "run", str(source), "-o", str(tmp_path / "out")]
    result = subprocess.run(
        [*command, "--engine", "ray", "--emulate"],
        env=cli_env(KEY),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "batch-embed: error: --engine ray needs `pip install 'batch_embed[ray]'`"
    )
    local = subprocess.run(
        [*command, "--emulate", "--quiet"],
        env=cli_env(KEY),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert local.returncode == 0, local.stderr  # the local engine never imports ray
