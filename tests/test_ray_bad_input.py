"""Bad input on ``--engine ray``: every row judged as the local engine judges it, with its
file and line; a file that cannot be read stops the run with exit 2 before any paid call.

The read functions and the id pass's verdicts are tested directly (no Ray); the CLI runs
start their own local Ray and an emulator process on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_embed.inputs import InputFile
from batch_embed.models import DEFAULT_MODEL, model_spec
from batch_embed.reader import ReaderConfig
from tests.cli_fixtures import EmulatorProcess
from tests.test_ray_cli import EMULATOR, check_vectors, ray_run, read_dir, submits

pytest.importorskip("ray")

from batch_embed.ray.cli_inputs import Fields, read_files, seq_of
from batch_embed.ray.duplicates import mark_duplicates, settle

SPEC = model_spec(DEFAULT_MODEL)
TOO_LONG = "word " * (SPEC.max_tokens + 50)

BAD_JSONL = [
    '{"id": 1, "text": "first"}',
    '{"id": 2, "text": "second"',  # line 2: not JSON
    '{"id": 3, "text": 5}',  # line 3: the text is a number
    "",  # a blank line is no row
    '{"id": 1, "text": "first"}',  # line 5: id 1 again, same text: a harmless repeat
    '{"id": 1, "text": "other"}',  # line 6: id 1 again, another text: duplicate_id
    '{"id": "x", "text": "a string id"}',  # line 7: this run's ids are integers
    '{"id": 4, "text": "   "}',  # line 8: only whitespace
    '{"id": 5, "text": "fifth"}',
]


def write_bad_corpus(tmp_path: Path) -> tuple[Path, Path]:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(BAD_JSONL) + "\n")
    parquet = tmp_path / "b.parquet"
    texts = ["sixth", None, TOO_LONG, "first", "second"]
    pq.write_table(pa.table({"id": [6, 7, 8, 10, 9], "text": texts}), parquet)
    return jsonl, parquet


def fields(id_field: str | None = "id") -> Fields:
    config = ReaderConfig(text_field="text", id_field=id_field, batch_size=4, model=SPEC)
    return Fields(config, "int")


def test_a_read_task_judges_every_row_as_the_local_engine_and_keeps_its_place(
    tmp_path: Path,
) -> None:
    jsonl, _ = write_bad_corpus(tmp_path)
    files = [InputFile(jsonl, "a.jsonl", "jsonl", False)]
    tables = list(read_files(pa.table({"file": [0]}), files=files, fields=fields()))
    assert [t.num_rows for t in tables] == [4, 4]  # the Reader's batches
    rows = pa.concat_tables(tables).to_pylist()
    assert [r["seq"] for r in rows] == [1, 2, 3, 5, 6, 7, 8, 9]
    by_line = {r["seq"]: r for r in rows}
    assert by_line[1]["text"] == "first" and by_line[1]["bad"] is None
    assert len(by_line[1]["text_sha256"]) == 64
    assert by_line[2]["bad"].startswith("a.jsonl, line 2: malformed JSON")
    assert (
        by_line[3]["bad"] == "a.jsonl, line 3, field 'text': text must be a string, got an integer"
    )
    assert by_line[7]["id"] is None, "a string id cannot go in an integer id column"
    assert "line 7, field 'id'" in by_line[7]["bad"]
    for line in (2, 3, 7, 8):
        assert by_line[line]["text"] is None and by_line[line]["text_sha256"] is None
        assert by_line[line]["bad_kind"] == "bad_input"
    # Without an id field the keys are derived from the file and line, as on one machine.
    derived = read_files(
        pa.table({"file": [0]}), files=files, fields=Fields(fields(None).config, "str")
    )
    assert next(iter(derived))["id"].to_pylist()[:2] == ["a.jsonl:1", "a.jsonl:2"]


def test_the_first_row_of_an_id_wins_a_repeat_is_dropped_another_text_is_an_error() -> None:
    files = [
        InputFile(Path("a.jsonl"), "a.jsonl", "jsonl", False),
        InputFile(Path("b.parquet"), "b.parquet", "parquet", False),
    ]
    a, b = (lambda n: seq_of(0, f"line {n}")), (lambda n: seq_of(1, f"row {n}"))
    table = pa.table(
        {  # not in input order: the pass orders by seq
            "id": [1, 2, 1, 1, 3, 2],
            "text_sha256": ["h1", "h2", "hX", "h1", "h3", "h2"],
            "seq": [b(0), a(1), a(9), a(2), b(1), b(4)],
        }
    )
    verdicts = settle(table, files, "id")
    assert sorted(verdicts.repeats.to_pylist()) == [b(0), b(4)]
    assert verdicts.conflicts.to_pylist() == [a(9)]
    assert verdicts.messages.to_pylist() == [
        "a.jsonl, line 9, field 'id': id 1 was already used by a.jsonl, line 2 with a "
        "different text; this row is not embedded"
    ]
    batch = pa.table(
        {
            "id": [1, 1, 3],
            "text": ["one", "x", "three"],
            "text_sha256": ["h1", "hX", "h3"],
            "bad": pa.array([None, None, None], pa.string()),
            "bad_kind": pa.array([None, None, None], pa.string()),
            "seq": [b(0), a(9), b(1)],
        }
    )
    marked = mark_duplicates(batch, duplicates=verdicts).to_pylist()
    assert [r["id"] for r in marked] == [1, 3]  # the repeat is gone
    assert marked[0]["bad_kind"] == "duplicate_id" and marked[0]["text"] is None
    assert marked[0]["text_sha256"] is None, "never matched with what the output holds"
    assert marked[1]["bad"] is None and marked[1]["text"] == "three"
    assert "seq" not in marked[0]
    assert len(settle(None, files, "id")) == 0


def test_bad_rows_go_to_the_errors_with_their_place_and_the_rest_is_embedded_once(
    tmp_path: Path,
) -> None:
    jsonl, parquet = write_bad_corpus(tmp_path)
    out = tmp_path / "vectors"
    with EmulatorProcess(*EMULATOR) as emu:
        first = ray_run([jsonl, parquet], out, emu.url)
        assert first.returncode == 3, first.stderr
        assert "Traceback" not in first.stderr
        assert "1 rows reuse an earlier row's id with another text" in first.stderr
        # first (ids 1 and 10), fifth, sixth, second (id 9): four texts, each paid once
        assert submits(emu) == 4
        errors = {
            (r["id"], r["error_kind"], r["error"]) for r in read_dir(f"{out}.errors").to_pylist()
        }
        assert errors == {
            (None, "bad_input", next(e for _, _, e in errors if "line 2:" in e)),
            (
                3,
                "bad_input",
                f"{jsonl}, line 3, field 'text': text must be a string, got an integer",
            ),
            (
                1,
                "duplicate_id",
                f"{jsonl}, line 6, field 'id': id 1 was already used by {jsonl}, line 1 "
                "with a different text; this row is not embedded",
            ),
            (
                None,
                "bad_input",
                f"{jsonl}, line 7, field 'id': id is a string, but this run's ids are integers",
            ),
            (4, "bad_input", f"{jsonl}, line 8, field 'text': text is only whitespace"),
            (7, "bad_input", f"{parquet}, row 1, field 'text': text is null"),
            (8, "too_long", next(e for i, _, e in errors if i == 8)),
        }
        assert f"{parquet}, row 2, field 'text': text has" in next(
            e for i, _, e in errors if i == 8
        )
        texts = {1: "first", 5: "fifth", 6: "sixth", 9: "second", 10: "first"}
        check_vectors(read_dir(out), texts)
        # Again: nothing paid, the same errors (the earlier run's are replaced, not added).
        again = ray_run([jsonl, parquet], out, emu.url)
        assert again.returncode == 3, again.stderr
        assert submits(emu) == 4
        assert read_dir(f"{out}.errors").num_rows == 7
        # --truncate: the too-long text is cut to the model's limit and embedded.
        cut = ray_run([jsonl, parquet], out, emu.url, "--truncate")
        assert cut.returncode == 3, cut.stderr
        assert submits(emu) == 5
    assert sorted(read_dir(out)["id"].to_pylist()) == [1, 5, 6, 8, 9, 10]
    assert read_dir(f"{out}.errors").num_rows == 6


def test_a_file_that_breaks_midway_stops_the_run_before_any_paid_call(tmp_path: Path) -> None:
    whole = "".join(json.dumps({"id": i, "text": f"row {i} " * 8}) + "\n" for i in range(5000))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(whole.encode())[:20_000])
    with EmulatorProcess(*EMULATOR) as emu:
        result = ray_run([broken], tmp_path / "out", emu.url)
        assert submits(emu) == 0
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "core_worker" not in line]
    assert lines[-1].startswith(f"batch-embed: error: {broken}, line ")
    assert lines[-1].endswith("gzip stream is truncated")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_past_the_preflight_that_lacks_the_text_is_refused_before_any_call(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(17):  # the driver's preflight looks at the first 16
        column = "body" if i == 16 else "text"
        pq.write_table(pa.table({"id": [i], column: [f"text {i}"]}), corpus / f"p{i:02}.parquet")
    with EmulatorProcess(*EMULATOR) as emu:
        result = ray_run([corpus], tmp_path / "out", emu.url)
        assert submits(emu) == 0
    assert result.returncode == 2, result.stderr
    assert f"{corpus / 'p16.parquet'}, field 'text': no such column" in result.stderr


def test_an_input_error_crosses_a_process_boundary_whole() -> None:
    import pickle

    from batch_embed.errors import InputError

    err = InputError("gzip stream is truncated", path="a.jsonl.gz", location="line 9", field="t")
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.path, back.location, back.field) == (
        "gzip stream is truncated",
        "a.jsonl.gz",
        "line 9",
        "t",
    )
    assert str(back) == str(err) == "a.jsonl.gz, line 9, field 't': gzip stream is truncated"
