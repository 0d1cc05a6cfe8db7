"""``batch-embed run --engine ray`` end to end: the real CLI in a subprocess, its own local
Ray, an emulator process on 127.0.0.1.

Each run starts Ray (about 5 s), so the corpora are small and the runs few: one test takes
a corpus through a first run, a re-run, a killed write's leftovers, a grown corpus and a
changed text.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
        first = ray_run([source], out, emu.url, "--summary-json", str(tmp_path / "s.json"))
        assert first.returncode == 3, first.stderr  # some rows failed
        summary_json = json.loads((tmp_path / "s.json").read_text())
        assert summary_json["outcome"] == "rows_failed"
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
        assert summary_json["rows_embedded"] == vectors.num_rows
        assert summary_json["rows_failed"] == len(failed)

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


def test_a_killed_run_is_resumed_on_the_jobs_it_submitted(tmp_path: Path) -> None:
    """SIGKILL the driver mid-run: the re-run re-attaches to the journaled jobs, so only the
    submits of the kill's last moments (the pump's last interval, and the workers Ray had
    not stopped yet) are paid twice."""
    source, out = tmp_path / "corpus.jsonl", tmp_path / "vectors"
    rows = [{"id": i, "text": f"killed ray row {i}"} for i in range(200)]
    write_corpus(source, rows)
    jobs = tmp_path / "vectors.batch_embed" / "ray-jobs.jsonl"
    slow = ("--api-key", KEY, "--latency", "0.8-1.2", "--seed", "5")
    paced = ("--rpm", "600", "--read-rate", "400")  # 10 submits/s: 20 s for the corpus
    with EmulatorProcess(*slow) as emu:
        command = batch_embed_cli(
            "run", source, "--output", out, "--engine", "ray", "--base-url", emu.url, *paced
        )
        proc = subprocess.Popen(
            command, env=cli_env(KEY), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and journaled(jobs) < 60:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(3)  # Ray stops the killed driver's workers
        kept = journaled(jobs)
        paid_by_kill = submits(emu)
        assert 60 <= kept <= paid_by_kill < len(rows), (kept, paid_by_kill)
        again = ray_run([source], out, emu.url, *paced)
        assert again.returncode == 0, again.stderr
        assert f"re-attaching to {kept} jobs" in again.stderr
        stats = emu.stats()
    check_vectors(read_dir(out), {r["id"]: r["text"] for r in rows})
    assert read_dir(out).num_rows == len(rows)
    assert stats["distinct_texts"] == len(rows)
    paid_twice = int(stats["jobs_created"]) - len(rows)  # type: ignore[call-overload]
    assert paid_twice == paid_by_kill - kept, "only the unjournaled jobs are paid again"
    print(f"journaled {kept} of {paid_by_kill} submits at the kill; {paid_twice} paid twice")
    assert paid_twice < 40 < kept  # 10/s for the pump's 0.5 s and Ray's ~1.5 s to stop
    assert not jobs.exists(), "a completed run leaves no jobs to resume"


def journaled(path: Path) -> int:
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def test_the_submit_cap_stops_the_run_and_the_next_run_continues(tmp_path: Path) -> None:
    source, out = tmp_path / "corpus.jsonl", tmp_path / "vectors"
    rows = corpus(60, start=30)  # 30 distinct texts, none empty
    write_corpus(source, rows)
    summary = tmp_path / "summary.json"
    with EmulatorProcess(*EMULATOR) as emu:
        cost = ("--max-cost", "0.05", "--price-per-call", "0.01")  # buys 5 submits
        first = ray_run([source], out, emu.url, *cost, "--summary-json", str(summary))
        assert first.returncode == 6, first.stderr
        assert "stopped at the submit cap: 25 texts not submitted" in first.stderr
        assert submits(emu) == 5
        figures = json.loads(summary.read_text())
        assert (figures["outcome"], figures["paid_submits"]) == ("capped", 5)
        assert (figures["rows_embedded"], figures["rows_failed"]) == (5, 0)
        assert not (tmp_path / "vectors.errors").exists(), "a capped row is not an error"
        second = ray_run([source], out, emu.url, "--max-submits", "10")
        assert second.returncode == 6, second.stderr
        assert submits(emu) == 15
        third = ray_run([source], out, emu.url)
        assert third.returncode == 0, third.stderr
        assert "paid submits 15;" in third.stderr
        assert submits(emu) == 30
    check_vectors(read_dir(out), {r["id"]: r["text"] for r in rows})
    assert read_dir(out).num_rows == 30


def test_a_missing_field_is_refused_before_any_call(tmp_path: Path) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, [{"id": 1, "body": "no text field here"}])
    with EmulatorProcess(*EMULATOR) as emu:
        result = ray_run([source], tmp_path / "out", emu.url)
        assert result.returncode == 2, result.stderr
        assert str(source) in result.stderr and "'text'" in result.stderr
        assert submits(emu) == 0
    assert not (tmp_path / "out").exists()


def test_a_refused_key_stops_the_run_with_exit_4_and_one_line(tmp_path: Path) -> None:
    source = tmp_path / "corpus.jsonl"
    write_corpus(source, corpus(5))
    with EmulatorProcess(*EMULATOR) as emu:
        command = batch_embed_cli(
            "run", source, "-o", tmp_path / "out", "--engine", "ray", "--base-url", emu.url
        )
        result = subprocess.run(
            command, env=cli_env("sk-wrong"), capture_output=True, text=True, timeout=90
        )
        assert submits(emu) == 0
    assert result.returncode == 4, result.stderr
    assert "batch-embed: error: run aborted: POST /v2/" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--fresh",), "--fresh does not apply to --engine ray"),
        (("--prune",), "--prune does not apply"),
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
    assert result.returncode == 2 and "not one file" in result.stderr
    errors = tmp_path / "errors.jsonl"
    result = ray_run([source], tmp_path / "out", "http://127.0.0.1:9", "--errors", str(errors))
    assert result.returncode == 2 and f"--errors {errors}:" in result.stderr


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


# The output rules of batch_embed.ray.cli_outputs, on local files (no Ray started).


def write_run(store_dir: Path, run: str, name: str, rows: dict[int, str]) -> None:
    import pyarrow.parquet as pq

    (store_dir / run).mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": list(rows), "text_sha256": list(rows.values())})
    pq.write_table(table, store_dir / run / name)


def test_the_latest_run_of_an_id_wins_and_unreadable_files_are_removed(tmp_path: Path) -> None:
    from batch_embed.ray.cli_outputs import ID, TEXT_HASH, Store, prune_superseded, read_index

    out = tmp_path / "out"
    write_run(out, "run-1", "a.parquet", {1: "h1", 2: "h2"})
    write_run(out, "run-1", "b.parquet", {3: "h3"})
    write_run(out, "run-2", "c.parquet", {1: "h1-new", 3: "h3-new"})
    (out / "run-2" / "killed.parquet").write_bytes(b"PAR1")
    (out / "run-2" / ".c.parquet.tmp").write_bytes(b"a rewrite killed midway")
    store = Store.at(out)
    index = read_index(store, (ID, TEXT_HASH))
    assert index.removed == (f"{out}/run-2/killed.parquet",)
    assert not (out / "run-2" / ".c.parquet.tmp").exists()
    kept, removed = prune_superseded(store, index)
    assert removed == 2
    assert not (out / "run-1" / "b.parquet").exists()  # its only row was superseded
    left = read_index(store, (ID, TEXT_HASH)).table
    pairs = sorted(zip(left[ID].to_pylist(), left[TEXT_HASH].to_pylist(), strict=True))
    assert pairs == [(1, "h1-new"), (2, "h2"), (3, "h3-new")]
    assert kept.table.num_rows == 3


def test_earlier_errors_kept_are_the_latest_content_failures_not_embedded_since(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    from batch_embed.ray.cli_outputs import ERROR_COLUMNS, Store, keys_of, latest_errors
    from batch_embed.ray.cli_outputs import read_index as index_of

    errors = tmp_path / "errors"
    for run, rows in {
        "run-1": [(1, "h1", "failed"), (2, "h2", "failed"), (4, "h4", "bad_output")],
        "run-2": [(1, "h1", "retries_exhausted"), (3, "h3", "rejected")],
    }.items():
        (errors / run).mkdir(parents=True)
        ids, hashes, kinds = zip(*rows, strict=True)
        table = pa.table(
            {"id": ids, "text_sha256": hashes, "error_kind": kinds, "error": ["why"] * len(ids)}
        )
        pq.write_table(table, errors / run / "part.parquet")
    index = index_of(Store.at(errors), ERROR_COLUMNS)
    done = keys_of(pa.array([4]), pa.array(["h4"]))  # embedded since
    kept = latest_errors(index, done, retry_failed=False)
    # 1: its latest error passes (retried); 4: embedded since; 2 and 3: content failures
    assert sorted(kept["key"].to_pylist()) == ["2\x1fh2", "3\x1fh3"]
    assert latest_errors(index, done, retry_failed=True).num_rows == 0


def test_a_batch_retried_by_ray_replaces_its_own_errors_file(tmp_path: Path) -> None:
    from batch_embed.ray.cli_outputs import Known, Store, split

    known = Known(pa.array([], pa.string()), pa.table({"key": pa.array([], pa.string())}))
    batch = pa.table(
        {
            "id": [1, 2, 3],
            "text": ["a", None, "c"],
            "text_sha256": ["ha", None, "hc"],
            "bad": [None, "field 'text': text is null", None],
            "bad_kind": [None, "too_long", None],
            "embedding": pa.array([[1.0], None, None], pa.list_(pa.float32(), 1)),
            "error_kind": [None, "bad_input", "failed"],
            "error": [None, "column 'text' is missing", "blocked"],
        }
    )
    store = Store.at(tmp_path / "errors")
    for _ in range(2):
        vectors = split(batch, known=known, errors=store, run="run-1")
    assert vectors.column_names == ["id", "embedding", "text_sha256"]
    assert vectors["id"].to_pylist() == [1]
    files = list((tmp_path / "errors" / "run-1").iterdir())
    assert len(files) == 1
    rows = read_dir(tmp_path / "errors").to_pylist()
    assert [(r["id"], r["error_kind"], r["error"]) for r in rows] == [
        (2, "too_long", "field 'text': text is null"),  # the reader's kind, not the worker's
        (3, "failed", "blocked"),
    ]


def test_a_text_the_output_holds_under_another_id_is_copied_not_paid(tmp_path: Path) -> None:
    first, second, out = tmp_path / "first.jsonl", tmp_path / "second.jsonl", tmp_path / "v"
    write_corpus(first, [{"id": i, "text": f"known text {i}"} for i in range(10)])
    grown = [{"id": 0, "text": "id 0 changed"}]  # its old text moves to id 10 below
    grown += [{"id": 10 + i, "text": f"known text {i}"} for i in range(5)]
    grown += [{"id": 20, "text": "known text 1"}, {"id": 21, "text": "brand new"}]
    write_corpus(second, grown)
    with EmulatorProcess(*EMULATOR) as emu:
        assert ray_run([first], out, emu.url).returncode == 0
        assert submits(emu) == 10
        result = ray_run([second], out, emu.url, "--summary-json", str(tmp_path / "s.json"))
        assert result.returncode == 0, result.stderr
        assert "copied 6 vectors of texts the output holds under other ids" in result.stderr
        assert submits(emu) == 12, "only 'id 0 changed' and 'brand new' are paid"
        figures = json.loads((tmp_path / "s.json").read_text())
        assert (figures["paid_submits"], figures["rows_copied"]) == (2, 6)
        again = ray_run([second], out, emu.url)
        assert again.returncode == 0 and "copied" not in again.stderr, again.stderr
        assert submits(emu) == 12
    texts = {i: f"known text {i}" for i in range(1, 10)}
    texts |= {r["id"]: r["text"] for r in grown}
    table = read_dir(out)
    assert sorted(table["id"].to_pylist()) == sorted(texts)
    check_vectors(table, texts)
