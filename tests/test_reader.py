"""Tests of stage 1: resolving inputs, the preflight, and the row stream (real files only)."""

from __future__ import annotations

import gzip
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batch_embed.reader as reader_module
from batch_embed.errors import ConfigError, InputError
from batch_embed.inputs import InputFile, resolve_inputs
from batch_embed.jsonl_input import SNIFF_LINES
from batch_embed.models import ModelSpec
from batch_embed.reader import FileStats, Reader, ReaderConfig
from batch_embed.records import ErrorKind, ErrorRecord, Row, text_hash
from batch_embed.tokens import encode

MODEL = ModelSpec(slug="test-model", dim=4)


# ---------------------------------------------------------------- helpers


def write_jsonl(path: Path, *lines: object) -> Path:
    """Write one line per item: bytes and str verbatim, anything else as JSON."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(orjson.dumps(line))
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def write_parquet(path: Path, columns: dict[str, Any], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def make_reader(*paths: Path | str, model: ModelSpec = MODEL, **config: Any) -> Reader:
    return Reader(resolve_inputs([str(p) for p in paths]), ReaderConfig(model=model, **config))


def read_all(*paths: Path | str, **config: Any) -> tuple[Reader, list[Row | ErrorRecord]]:
    reader = make_reader(*paths, **config)
    items = [item for batch in reader.batches() for item in batch]
    return reader, items


def rows(items: list[Row | ErrorRecord]) -> list[Row]:
    return [item for item in items if isinstance(item, Row)]


def errors(items: list[Row | ErrorRecord]) -> list[ErrorRecord]:
    return [item for item in items if isinstance(item, ErrorRecord)]


def only_error(items: list[Row | ErrorRecord]) -> ErrorRecord:
    found = errors(items)
    assert len(found) == 1, found
    return found[0]


def preflight_error(*paths: Path | str, **config: Any) -> InputError:
    with pytest.raises(InputError) as info:
        make_reader(*paths, **config).preflight()
    return info.value


# ---------------------------------------------------------------- the happy path


def test_jsonl_rows_keep_text_verbatim_with_hash_and_location(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl", {"id": "x", "text": "  padded\n"}, {"id": "y", "text": "héllo"}
    )
    reader, items = read_all(path, id_field="id")
    assert items == [
        Row("x", "  padded\n", str(path), "line 1", text_hash("  padded\n")),
        Row("y", "héllo", str(path), "line 2", text_hash("héllo")),
    ]
    assert reader.stats == {str(path): FileStats(rows_read=2, rows_ok=2, rows_bad=0)}


def test_parquet_rows_use_zero_based_row_locations(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"id": [10, 20], "text": ["a", "b"]})
    reader, items = read_all(path, id_field="id")
    assert [(r.key, r.text, r.location) for r in rows(items)] == [
        (10, "a", "row 0"),
        (20, "b", "row 1"),
    ]
    assert reader.key_type == "int"


@pytest.mark.parametrize(
    "dtype",
    [pa.string(), pa.large_string(), pa.string_view(), pa.dictionary(pa.int32(), pa.string())],
)
def test_parquet_accepts_every_string_type(tmp_path: Path, dtype: pa.DataType) -> None:
    array = pa.array(["one", "two"], pa.string()).cast(dtype)
    path = write_parquet(tmp_path / "a.parquet", {"text": array})
    _, items = read_all(path)
    assert [r.text for r in rows(items)] == ["one", "two"]


def test_batches_hold_at_most_batch_size_and_never_span_files(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", *({"text": f"t{i}"} for i in range(7)))
    b = write_parquet(tmp_path / "b.parquet", {"text": [f"u{i}" for i in range(5)]})
    batches = list(make_reader(a, b, batch_size=3).batches())
    assert [len(batch) for batch in batches] == [3, 3, 1, 3, 2]
    assert {item.source for item in batches[2]} == {str(a)}
    assert {item.source for item in batches[3]} == {str(b)}


def test_blank_lines_count_as_lines_but_produce_nothing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", "", {"text": "a"}, "   ", "", {"text": "b"})
    reader, items = read_all(path)
    assert [r.location for r in rows(items)] == ["line 2", "line 5"]
    assert reader.stats[str(path)].rows_read == 2


def test_a_leading_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", b'\xef\xbb\xbf{"text": "a"}')
    _, items = read_all(path)
    assert [r.text for r in rows(items)] == ["a"]


def test_gzip_and_ndjson_inputs(tmp_path: Path) -> None:
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "zipped"}\n'))
    nd = write_jsonl(tmp_path / "b.NDJSON", {"text": "nd"})
    _, items = read_all(gz, nd)
    assert [r.text for r in rows(items)] == ["zipped", "nd"]


# ---------------------------------------------------------------- resolving inputs


def test_directory_is_walked_recursively_sorted_with_user_spelled_sources(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / ".hidden").mkdir()
    write_jsonl(data / "b.jsonl", {"text": "b"})
    write_jsonl(data / "sub" / "a.ndjson", {"text": "a"})
    write_parquet(data / "c.parquet", {"text": ["c"]})
    write_jsonl(data / ".hidden" / "x.jsonl", {"text": "x"})
    (data / "notes.txt").write_text("not an input")
    files = resolve_inputs([f"{data}/"])
    assert [f.source for f in files] == [
        f"{data}/b.jsonl",
        f"{data}/c.parquet",
        f"{data}/sub/a.ndjson",
    ]
    assert [(f.format, f.compressed) for f in files] == [
        ("jsonl", False),
        ("parquet", False),
        ("jsonl", False),
    ]


def test_glob_is_expanded_sorted_and_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        write_jsonl(tmp_path / name, {"text": name})
    files = resolve_inputs([str(tmp_path / "*"), str(tmp_path / "a.jsonl")])
    assert [f.path.name for f in files] == ["a.jsonl", "b.jsonl"]


def test_relative_sources_keep_the_users_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "x.jsonl", {"text": "x"})
    assert [f.source for f in resolve_inputs(["d"])] == ["d/x.jsonl"]
    assert [f.source for f in resolve_inputs(["d/*.jsonl"])] == ["d/x.jsonl"]
    assert [f.source for f in resolve_inputs(["./d/x.jsonl"])] == ["./d/x.jsonl"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.jsonl", "no such file or directory"),
        ("*.nothing", "pattern matches nothing"),
        ("data.csv", "unknown file type"),
        ("empty_dir", "directory holds no input files"),
    ],
)
def test_resolve_errors_name_the_input(tmp_path: Path, name: str, reason: str) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError) as info:
        resolve_inputs([str(tmp_path / name)])
    assert info.value.path == str(tmp_path / name)
    assert reason in str(info.value)


def test_resolve_needs_at_least_one_input() -> None:
    with pytest.raises(ConfigError, match="inputs"):
        resolve_inputs([])


def test_config_is_validated_on_construction() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        ReaderConfig(model=MODEL, batch_size=0)
    with pytest.raises(ConfigError, match="text_field"):
        ReaderConfig(model=MODEL, text_field="")
    with pytest.raises(ConfigError, match="id_field"):
        ReaderConfig(model=MODEL, id_field="")


# ---------------------------------------------------------------- preflight (file-level)


def test_empty_files_fail_preflight(tmp_path: Path) -> None:
    (tmp_path / "zero.jsonl").write_bytes(b"")
    write_jsonl(tmp_path / "blank.jsonl", "", "  ", "")
    write_parquet(tmp_path / "none.parquet", {"text": pa.array([], pa.string())})
    (tmp_path / "empty.jsonl.gz").write_bytes(gzip.compress(b"\n\n"))
    for name, reason in [
        ("zero.jsonl", "file is empty"),
        ("blank.jsonl", "only blank lines"),
        ("none.parquet", "no rows"),
        ("empty.jsonl.gz", "only blank lines"),
    ]:
        err = preflight_error(tmp_path / name)
        assert err.path == str(tmp_path / name)
        assert reason in str(err)


def test_a_file_that_vanished_after_resolving_fails_preflight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "a"})
    reader = make_reader(path)
    path.unlink()
    with pytest.raises(InputError, match="no such file"):
        reader.preflight()


def test_an_unreadable_file_fails_preflight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "a"})
    reader = make_reader(path)
    path.chmod(0)
    as_root = os.geteuid() == 0
    try:
        if as_root:  # root reads anything: drop to "nobody" for the check
            os.seteuid(65534)
        with pytest.raises(InputError) as info:
            reader.preflight()
    finally:
        if as_root:
            os.seteuid(0)
        path.chmod(0o644)
    assert info.value.path == str(path)
    assert "Permission denied" in str(info.value)


def test_a_gz_file_that_is_not_gzip_fails_preflight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl.gz", {"text": "plain"})
    err = preflight_error(path)
    assert err.path == str(path)
    assert "not a gzip file" in str(err)


def test_jsonl_that_is_not_jsonl_fails_preflight(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("id,text\n1,hello\n" + "2,more\n" * 200 + '{"text": "too late"}\n')
    err = preflight_error(path)
    assert err.path == str(path)
    assert f"none of the first {SNIFF_LINES} non-blank lines is a JSON object" in str(err)


def test_a_gzip_file_named_plain_jsonl_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n'))
    assert "name it .jsonl.gz" in str(preflight_error(path))


def test_one_good_object_among_the_first_lines_is_enough(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", *(["[1]"] * (SNIFF_LINES - 1)), {"text": "ok"})
    make_reader(path).preflight()


def test_a_field_absent_from_every_sampled_record_fails_preflight(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"body": "a"}, {"body": "b"})
    err = preflight_error(path)
    assert (err.path, err.field) == (str(path), "text")
    path = write_jsonl(tmp_path / "b.jsonl", {"text": "a", "ID": 1})
    err = preflight_error(path, id_field="id")
    assert (err.path, err.field) == (str(path), "id")


@pytest.mark.parametrize(
    ("columns", "field", "reason"),
    [
        ({"body": ["a"]}, "text", "no such column"),
        ({"text": pa.array([b"a"], pa.binary())}, "text", "not a string type"),
        ({"text": [1]}, "text", "not a string type"),
        ({"text": ["a"]}, "id", "no such id column"),
        ({"text": ["a"], "id": [1.5]}, "id", "ids must be integers or strings"),
        ({"text": ["a"], "id": [True]}, "id", "ids must be integers or strings"),
    ],
)
def test_parquet_schema_problems_fail_preflight(
    tmp_path: Path, columns: dict[str, Any], field: str, reason: str
) -> None:
    path = write_parquet(tmp_path / "a.parquet", columns)
    err = preflight_error(path, id_field="id" if field == "id" else None)
    assert (err.path, err.field) == (str(path), field)
    assert reason in str(err)


def test_a_file_that_is_not_parquet_fails_preflight(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_text('{"text": "json in disguise"}\n')
    assert "not a readable Parquet file" in str(preflight_error(path))


def test_preflight_checks_all_inputs_before_the_first_batch(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "a.jsonl", {"text": "a"})
    bad = write_parquet(tmp_path / "b.parquet", {"body": ["b"]})
    batches = make_reader(good, bad).batches()
    with pytest.raises(InputError) as info:
        next(batches)
    assert info.value.path == str(bad)


def test_preflight_reads_only_the_head_of_a_jsonl_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", *({"text": "x"} for _ in range(SNIFF_LINES)))
    with path.open("ab") as fh:
        fh.write(b"[not json")
        fh.truncate(1 << 30)  # a sparse gigabyte of NULs: reading it would take long and show
    tracemalloc.start()
    try:
        started = time.perf_counter()
        make_reader(path).preflight()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20
    assert elapsed < 1.0


# ---------------------------------------------------------------- row-level problems


def test_malformed_json_says_where_and_the_good_rows_around_it_survive(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl", {"text": "before"}, '{"text": "broken', {"text": "after"}
    )
    reader, items = read_all(path)
    assert [r.text for r in rows(items)] == ["before", "after"]
    err = only_error(items)
    assert (err.kind, err.location, err.key, err.field) == (
        ErrorKind.BAD_INPUT,
        "line 2",
        f"{path}:2",
        None,
    )
    assert err.message.startswith(f"{path}, line 2: malformed JSON at column 17")
    assert reader.stats[str(path)] == FileStats(rows_read=3, rows_ok=2, rows_bad=1)


@pytest.mark.parametrize(
    ("line", "what"), [("[1, 2]", "an array"), ("42", "an integer"), ('"s"', "a string")]
)
def test_a_line_that_is_not_an_object(tmp_path: Path, line: str, what: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "ok"}, line)
    err = only_error(read_all(path)[1])
    assert err.message == f"{path}, line 2: line is {what}, not a JSON object"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"other": "x"}, "text field is missing"),
        ({"text": None}, "text is null"),
        ({"text": 12}, "text must be a string, got an integer"),
        ({"text": ["a"]}, "text must be a string, got an array"),
        ({"text": ""}, "text is empty"),
        ({"text": " \t\n\u3000"}, "text is only whitespace"),
    ],
)
def test_unusable_texts(tmp_path: Path, record: dict[str, Any], reason: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "ok"}, record, {"text": "ok too"})
    _, items = read_all(path)
    assert len(rows(items)) == 2
    err = only_error(items)
    assert (err.kind, err.field, err.location) == (ErrorKind.BAD_INPUT, "text", "line 2")
    assert err.message == f"{path}, line 2, field 'text': {reason}"


def test_invalid_utf8_names_the_byte_offset_field_and_id(tmp_path: Path) -> None:
    bad_line = b'{"id": "b", "text": "caf\xe9"}'
    path = write_jsonl(tmp_path / "a.jsonl", {"id": "a", "text": "ok"}, bad_line)
    _, items = read_all(path, id_field="id")
    assert len(rows(items)) == 1
    err = only_error(items)
    assert (err.key, err.field, err.location) == ("b", "text", "line 2")
    assert f"invalid UTF-8 at byte {bad_line.index(0xE9)} of the line" in err.message


def test_invalid_utf8_in_parquet(tmp_path: Path) -> None:
    raw = pa.array([b"fine", b"caf\xe9", None], pa.binary()).view(pa.string())
    path = write_parquet(tmp_path / "a.parquet", {"text": raw})
    _, items = read_all(path)
    assert [r.text for r in rows(items)] == ["fine"]
    bad = errors(items)
    assert [(e.location, e.field) for e in bad] == [("row 1", "text"), ("row 2", "text")]
    reason = "invalid UTF-8 at byte 3 of the text (unexpected end of data)"
    assert bad[0].message == f"{path}, row 1, field 'text': {reason}"
    assert bad[1].message.endswith("text is null")


@pytest.mark.parametrize(
    ("id_value", "reason"),
    [
        (None, "id is null"),
        (1.5, "id must be an integer or a string, got a number"),
        (True, "id must be an integer or a string, got a boolean"),
        ({"a": 1}, "id must be an integer or a string, got an object"),
        (2**63, f"id {2**63} is outside the int64 range"),
        ("s", "id is a string, but this run's ids are integers"),
    ],
)
def test_unusable_ids(tmp_path: Path, id_value: object, reason: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"id": 1, "text": "a"}, {"id": id_value, "text": "b"})
    reader, items = read_all(path, id_field="id")
    assert reader.key_type == "int"
    err = only_error(items)
    assert (err.field, err.location) == ("id", "line 2")
    assert err.message == f"{path}, line 2, field 'id': {reason}"
    # The key is the id when it is one at all, else the derived key.
    assert err.key == (id_value if id_value in ("s",) else f"{path}:2")


def test_a_missing_id(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"id": "a", "text": "a"}, {"text": "b"})
    err = only_error(read_all(path, id_field="id")[1])
    assert err.message == f"{path}, line 2, field 'id': id is missing"


def test_id_problems_in_parquet(tmp_path: Path) -> None:
    ids = pa.array([1, None, 2**63], pa.uint64())
    path = write_parquet(tmp_path / "a.parquet", {"id": ids, "text": ["a", "b", "c"]})
    _, items = read_all(path, id_field="id")
    assert [r.key for r in rows(items)] == [1]
    assert [(e.location, e.message.split(": ")[-1]) for e in errors(items)] == [
        ("row 1", "id is null"),
        ("row 2", f"id {2**63} is outside the int64 range"),
    ]


def test_too_long_text_is_an_error_unless_truncating(tmp_path: Path) -> None:
    long = " ".join(f"word{i}" for i in range(6000))
    assert len(encode(long)) > MODEL.max_tokens
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "short"}, {"text": long})
    reader, items = read_all(path)
    err = only_error(items)
    assert (err.kind, err.field) == (ErrorKind.TOO_LONG, "text")
    assert f"more than the model's limit of {MODEL.max_tokens}" in err.message
    assert reader.stats[str(path)].truncated == 0


def test_truncation_keeps_exactly_max_tokens(tmp_path: Path) -> None:
    long = " ".join(f"word{i}" for i in range(6000))
    path = write_jsonl(tmp_path / "a.jsonl", {"text": long})
    reader, items = read_all(path, truncate=True)
    (row,) = rows(items)
    assert len(encode(row.text)) == MODEL.max_tokens
    assert long.startswith(row.text)
    assert row.text_hash == text_hash(row.text)
    assert reader.stats[str(path)] == FileStats(rows_read=1, rows_ok=1, truncated=1)


def test_truncation_never_leaves_a_broken_character(tmp_path: Path) -> None:
    small = ModelSpec(slug="small", dim=4, max_tokens=10)
    text = "🧪🦀é" * 40  # cl100k splits these characters across tokens
    path = write_parquet(tmp_path / "a.parquet", {"text": [text]})
    _, items = read_all(path, truncate=True, model=small)
    (row,) = rows(items)
    assert "\ufffd" not in row.text
    assert text.startswith(row.text)
    assert len(encode(row.text)) <= 10 < len(encode(text[: len(row.text) + 1]))


def test_texts_are_tokenized_only_when_their_bytes_exceed_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counting_encode(text: str) -> list[int]:
        calls.append(text)
        return encode(text)

    monkeypatch.setattr(reader_module, "encode_tokens", counting_encode)
    small = ModelSpec(slug="small", dim=4, max_tokens=12)
    exact, over = "a" * 12, "é" * 7  # 12 bytes; 14 bytes in 7 characters
    write_jsonl(tmp_path / "a.jsonl", {"text": exact}, {"text": over})
    write_parquet(tmp_path / "b.parquet", {"text": [exact, over]})
    _, items = read_all(tmp_path, model=small)
    assert len(rows(items)) == 4
    assert calls == [over, over]


# ---------------------------------------------------------------- dotted paths


def test_dotted_path_into_nested_json_and_literal_key_wins(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        {"meta": {"body": "nested", "id": 7}},
        {"meta.body": "literal", "meta": {"body": "shadowed", "id": 8}},
        {"meta": None},
        {"meta": {"body": None, "id": 9}},
    )
    _, items = read_all(path, text_field="meta.body", id_field="meta.id")
    assert [(r.key, r.text) for r in rows(items)] == [(7, "nested"), (8, "literal")]
    assert [e.message.split(": ")[-1] for e in errors(items)] == ["id is missing", "text is null"]


def test_dotted_path_into_parquet_struct_and_literal_column_wins(tmp_path: Path) -> None:
    meta = pa.array(
        [{"body": "a", "id": "k1", "n": 1}, None, {"body": None, "id": "k3", "n": 3}],
        pa.struct([("body", pa.string()), ("id", pa.string()), ("n", pa.int64())]),
    )
    nested = write_parquet(tmp_path / "nested.parquet", {"meta": meta})
    _, items = read_all(nested, text_field="meta.body", id_field="meta.id")
    assert [(r.key, r.text) for r in rows(items)] == [("k1", "a")]
    assert [(e.key, e.message.split(": ")[-1]) for e in errors(items)] == [
        (f"{nested}:1", "id is null"),
        ("k3", "text is null"),
    ]
    literal = write_parquet(tmp_path / "literal.parquet", {"meta.body": ["lit"] * 3, "meta": meta})
    _, items = read_all(literal, text_field="meta.body")
    assert [r.text for r in rows(items)] == ["lit"] * 3


def test_a_dotted_path_through_a_non_struct_is_no_column(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"meta": ["flat"]})
    assert preflight_error(path, text_field="meta.body").field == "meta.body"


# ---------------------------------------------------------------- keys


def test_derived_keys_are_stable_across_runs(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", {"text": "x"}, "", {"text": "y"})
    b = write_parquet(tmp_path / "b.parquet", {"text": ["z", "w"]})
    first = [r.key for r in rows(read_all(tmp_path)[1])]
    second = [r.key for r in rows(read_all(tmp_path)[1])]
    assert first == second == [f"{tmp_path}/a.jsonl:1", f"{tmp_path}/a.jsonl:3", f"{b}:0", f"{b}:1"]
    assert read_all(a)[0].key_type == "str"


def test_key_type_comes_from_the_first_usable_jsonl_id(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl", {"text": "a"}, {"id": 1.5, "text": "b"}, {"id": "s", "text": "c"}
    )
    reader, items = read_all(path, id_field="id")
    assert reader.key_type == "str"
    assert [r.key for r in rows(items)] == ["s"]


def test_key_type_comes_from_the_parquet_schema(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"id": pa.array([3], pa.uint16()), "text": ["a"]})
    jsonl = write_jsonl(tmp_path / "b.jsonl", {"id": "s", "text": "b"}, {"id": 4, "text": "c"})
    reader, items = read_all(path, jsonl, id_field="id")
    assert reader.key_type == "int"
    assert [r.key for r in rows(items)] == [3, 4]
    err = only_error(items)
    assert (err.key, err.field, err.location) == ("s", "id", "line 1")
    assert "string, but this run's ids are integers" in err.message


def test_parquet_ids_of_the_other_type_fail_preflight(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", {"id": 1, "text": "a"})
    b = write_parquet(tmp_path / "b.parquet", {"id": ["s"], "text": ["b"]})
    err = preflight_error(a, b, id_field="id")
    assert (err.path, err.field) == (str(b), "id")
    assert "holds string" in str(err) and "integer ids" in str(err)


def test_key_type_is_only_known_after_preflight(tmp_path: Path) -> None:
    reader = make_reader(write_jsonl(tmp_path / "a.jsonl", {"text": "a"}))
    with pytest.raises(RuntimeError, match="preflight"):
        _ = reader.key_type


# ---------------------------------------------------------------- streaming


def test_the_first_batch_of_a_huge_file_does_not_read_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "huge.jsonl", *({"text": f"t{i}"} for i in range(2000)))
    with path.open("ab") as fh:
        fh.truncate(1 << 30)  # a sparse gigabyte follows: only a lazy reader is quick and small
    reader = make_reader(path, batch_size=100)
    tracemalloc.start()
    try:
        batches = reader.batches()
        first = next(batches)
        peak = tracemalloc.get_traced_memory()[1]
        batches.close()
    finally:
        tracemalloc.stop()
    assert [r.location for r in first][-1] == "line 100"
    assert reader.stats[str(path)].rows_read == 100
    assert peak < 5 << 20


def test_parquet_is_read_a_batch_at_a_time(tmp_path: Path) -> None:
    texts = [os.urandom(1000).hex() for _ in range(20_000)]  # 40 MB in one row group
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": texts}), path, compression="none", row_group_size=len(texts))
    del texts
    batches = make_reader(path, batch_size=100).batches()
    try:
        assert len(next(batches)) == 100
        assert pa.total_allocated_bytes() < 8 << 20
    finally:
        batches.close()


def test_a_gzip_stream_that_breaks_midway_raises_with_the_line(tmp_path: Path) -> None:
    body = b"".join(orjson.dumps({"text": os.urandom(50).hex()}) + b"\n" for _ in range(20_000))
    packed = gzip.compress(body)
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    batches = make_reader(path).batches()
    with pytest.raises(InputError) as info:
        for _ in batches:
            pass
    assert info.value.path == str(path)
    assert info.value.location is not None and info.value.location.startswith("line ")
    assert "truncated" in str(info.value)


def test_reading_twice_restarts_the_stats(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", {"text": "a"})
    reader = make_reader(path)
    for _ in range(2):
        assert sum(len(b) for b in reader.batches()) == 1
    assert reader.stats[str(path)].rows_read == 1


def test_input_file_is_a_plain_value() -> None:
    file = InputFile(Path("a.jsonl"), "a.jsonl", "jsonl", False)
    assert file == InputFile(Path("a.jsonl"), "a.jsonl", "jsonl", False)
