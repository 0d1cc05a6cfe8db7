"""Tests of the errors output: one complete JSON line per record, repair on append, reading."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from batch_embed.error_sink import ErrorSink, read_errors
from batch_embed.errors import ConfigError, InputError
from batch_embed.records import ErrorKind, ErrorRecord, RowKey

FIELDS = [
    "id",
    "source",
    "location",
    "kind",
    "message",
    "field",
    "http_status",
    "attempts",
    "request_ids",
]


def record(key: RowKey | None, kind: ErrorKind = ErrorKind.FAILED, **kwargs: object) -> ErrorRecord:
    return ErrorRecord(
        key=key,
        source="in.jsonl",
        location="line 3",
        kind=kind,
        message=str(kwargs.pop("message", "content blocked")),
        **kwargs,  # type: ignore[arg-type]
    )


def test_records_keep_native_id_types_and_every_field(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    with ErrorSink(path) as sink:
        sink.write(record(7, http_status=422, attempts=2, request_ids=("r1", "r2")))
        sink.write(record("doc-7", ErrorKind.BAD_INPUT, field="text", message="text is empty"))
        sink.write(record(None, ErrorKind.BAD_INPUT, message="not a JSON object"))
    rows = read_errors(path)
    assert [list(r) for r in rows] == [FIELDS] * 3
    assert rows[0] == {
        "id": 7,
        "source": "in.jsonl",
        "location": "line 3",
        "kind": "failed",
        "message": "content blocked",
        "field": None,
        "http_status": 422,
        "attempts": 2,
        "request_ids": ["r1", "r2"],
    }
    assert rows[1]["id"] == "doc-7" and rows[1]["field"] == "text"
    assert rows[1]["kind"] == "bad_input"
    assert rows[2]["id"] is None
    # The same facts straight from the bytes, whatever reader a script uses.
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [7, "doc-7", None]


def test_one_complete_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    with ErrorSink(path) as sink:
        sink.write(record(1, message="line one\nline two\r\n\u2028end"))
        sink.write(record(2))
        # Flushed per record: readable before the sink closes.
        assert path.read_bytes().count(b"\n") == 2
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) == 2
    assert json.loads(lines[0])["message"] == "line one\nline two\r\n\u2028end"


def test_ids_and_text_orjson_refuses_are_still_written(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    with ErrorSink(path) as sink:
        sink.write(record(2**70))
        sink.write(record("bad\udcff", message="undecodable \udc80 byte"))
    rows = read_errors(path)
    assert rows[0]["id"] == 2**70
    assert rows[1]["id"] == "bad\\udcff"
    assert rows[1]["message"] == "undecodable \\udc80 byte"


def test_file_exists_even_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "errors.jsonl"
    with ErrorSink(path) as sink:
        assert sink.counts == {}
    assert path.read_bytes() == b""
    assert read_errors(path) == []


def test_fresh_truncates_and_append_keeps(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    with ErrorSink(path) as sink:
        sink.write(record(1))
    with ErrorSink(path, mode="append") as sink:
        sink.write(record(2))
    assert [r["id"] for r in read_errors(path)] == [1, 2]
    with ErrorSink(path, mode="fresh") as sink:
        sink.write(record(3))
    assert [r["id"] for r in read_errors(path)] == [3]
    with ErrorSink(tmp_path / "new.jsonl", mode="append") as sink:
        sink.write(record(4))
    assert [r["id"] for r in read_errors(tmp_path / "new.jsonl")] == [4]


@pytest.mark.parametrize("tail", [b'{"id": 3, "sou', b"{", b"x" * 200_000])
def test_append_repairs_a_partial_last_line(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "errors.jsonl"
    with ErrorSink(path) as sink:
        sink.write(record(1))
        sink.write(record(2))
    complete = path.read_bytes()
    with open(path, "ab") as file:
        file.write(tail)
    assert [r["id"] for r in read_errors(path)] == [1, 2]  # the reader skips it too
    with ErrorSink(path, mode="append") as sink:
        assert path.read_bytes() == complete
        sink.write(record(3))
    assert [r["id"] for r in read_errors(path)] == [1, 2, 3]


def test_append_repairs_a_file_that_is_only_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    path.write_bytes(b'{"id": 1')
    with ErrorSink(path, mode="append") as sink:
        sink.write(record(2))
    assert [r["id"] for r in read_errors(path)] == [2]


def test_killed_writer_leaves_a_file_a_resumed_run_can_use(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from batch_embed.error_sink import ErrorSink
        from batch_embed.records import ErrorKind, ErrorRecord
        sink = ErrorSink(Path({str(path)!r}))
        i = 0
        while True:
            sink.write(ErrorRecord(key=i, source="s", location=f"line {{i}}",
                                   kind=ErrorKind.FAILED, message="m" * (i % 5000)))
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not path.exists() or path.stat().st_size < 1_000_000:
            assert proc.poll() is None, "the writer process died"
            assert time.monotonic() < deadline, "the writer process made no progress"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = read_errors(path)
    assert [r["id"] for r in written] == list(range(len(written)))
    with ErrorSink(path, mode="append") as sink:
        sink.write(record(-1))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["id"] for line in lines[:-1]] == [*range(len(written)), -1]


def test_counts_by_kind(tmp_path: Path) -> None:
    with ErrorSink(tmp_path / "errors.jsonl") as sink:
        sink.write(record(1, ErrorKind.FAILED))
        sink.write(record(2, ErrorKind.TOO_LONG))
        sink.write(record(3, ErrorKind.FAILED))
        assert sink.counts == {"failed": 2, "too_long": 1}


def test_bad_mode_closed_sink_and_idempotent_close(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode"):
        ErrorSink(tmp_path / "e.jsonl", mode="w")  # type: ignore[arg-type]
    sink = ErrorSink(tmp_path / "e.jsonl")
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink.write(record(1))


def test_read_errors_names_a_corrupt_line(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    path.write_bytes(b'{"id": 1}\n\nnot json\n')
    with pytest.raises(InputError, match="line 3"):
        read_errors(path)
    path.write_bytes(b'{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match="line 2"):
        read_errors(path)
