"""The errors output: one JSON line per row that could not be embedded.

Each record is ``{"id", "source", "location", "kind", "message", "field", "http_status",
"attempts", "request_ids"}``, with ``id`` in its native JSON type (number or string; null when
the row had none). A record goes to the OS in one write with its newline, so a killed process
leaves at most one partial last line; opening in ``append`` mode truncates it away, and
:func:`read_errors` skips it. The file is created on open, so an empty file means no errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import orjson

from .errors import ConfigError, InputError
from .records import ErrorRecord
from .write_failures import writing

_TAIL_CHUNK = 64 * 1024


class ErrorSink:
    """Append error records to a JSONL file, one complete line each, flushed per record.

    ``counts`` holds the records written through this sink, by kind value (a resumed run
    does not count the lines it found).
    """

    def __init__(self, path: Path, *, mode: Literal["fresh", "append"] = "fresh") -> None:
        if mode not in ("fresh", "append"):
            raise ConfigError(f"mode: expected 'fresh' or 'append', got {mode!r}")
        self.path = Path(path)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if mode == "append" and self.path.exists():
                _truncate_partial_line(self.path)
            self._file = open(self.path, "wb" if mode == "fresh" else "ab")  # noqa: SIM115
        self.counts: dict[str, int] = {}

    def write(self, record: ErrorRecord) -> None:
        """Write one record as one line and flush it to the OS."""
        if self._file.closed:
            raise ValueError("ErrorSink is closed")
        with writing(self.path):
            self._file.write(_encode(record))
            self._file.flush()
        kind = record.kind.value
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def close(self) -> None:
        """Fsync and close the file; idempotent."""
        if self._file.closed:
            return
        with writing(self.path):
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

    def __enter__(self) -> ErrorSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_errors(path: Path) -> list[dict[str, object]]:
    """Return the records of an errors file (see :func:`iter_errors`)."""
    return list(iter_errors(path))


def iter_errors(path: Path) -> Iterator[dict[str, object]]:
    """Yield the records of an errors file in order, skipping a partial last line.

    Raises InputError (with the line number) for a complete line that is not a JSON object.
    The standard ``json`` module reads them, because orjson turns integers beyond 64 bits
    into floats, which would change such ids.
    """
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.endswith(b"\n"):
                break  # a record still being written, or cut by a kill
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise InputError(
                    f"not JSON: {err}", path=str(path), location=f"line {number}"
                ) from err
            if not isinstance(record, dict):
                raise InputError("not a JSON object", path=str(path), location=f"line {number}")
            yield record


def _encode(record: ErrorRecord) -> bytes:
    """Serialize one record as a JSON line (orjson; json for what orjson refuses)."""
    data: dict[str, object] = {
        "id": record.key,
        "source": record.source,
        "location": record.location,
        "kind": record.kind.value,
        "message": record.message,
        "field": record.field,
        "http_status": record.http_status,
        "attempts": record.attempts,
        "request_ids": list(record.request_ids),
    }
    try:
        return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits and lone surrogates (from undecodable input) are the cases:
        # json keeps the former exactly; the latter become visible \udcXX text.
        clean = {k: _clean_text(v) for k, v in data.items()}
        return json.dumps(clean, ensure_ascii=False).encode("utf-8") + b"\n"


def _clean_text(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_clean_text(item) for item in value]
    return value


def _truncate_partial_line(path: Path) -> None:
    """Cut the file after its last newline, dropping a line a killed run left unfinished."""
    with open(path, "r+b") as file:
        end = file.seek(0, os.SEEK_END)
        position = end
        cut = 0
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            file.seek(position - step)
            newline = file.read(step).rfind(b"\n")
            if newline >= 0:
                cut = position - step + newline + 1
                break
            position -= step
        if cut != end:
            file.truncate(cut)
            file.flush()
            os.fsync(file.fileno())
