"""The JSONL format: a cheap preflight of a file's first lines, then its rows, lazily.

Lines are read as bytes, one at a time (plain or gzip-compressed); blank lines are not
records, a leading BOM is dropped, line numbers are 1-based as editors count them. Every
line that is not a usable record becomes an error record naming the file, the line and,
where it applies, the field.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

import orjson

from .errors import InputError
from .fields import (
    MISSING,
    KeyType,
    MakeRow,
    as_key,
    dig,
    field_parts,
    get_field,
    json_type,
    key_kind,
    row_error,
)
from .inputs import InputFile
from .records import ErrorRecord, Row, RowKey

SNIFF_LINES = 100
"""How many non-blank lines of each JSONL file the preflight parses."""

_BOM = b"\xef\xbb\xbf"


def has_field(file: InputFile, name: str) -> bool:
    """True when the file's first JSON object record has the top-level key ``name``."""
    try:
        with open_jsonl(file) as fh:
            for _, line in numbered(fh, file):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                return type(obj) is dict and name in obj
    except InputError:
        return False  # the preflight reports what is wrong with the file
    return False


def preflight_jsonl(file: InputFile, text_field: str, id_field: str | None) -> KeyType | None:
    """Parse the first ``SNIFF_LINES`` lines; raise InputError when the file is unusable.

    Returns the key type of the first usable id seen (None when none is).
    """
    text_parts, id_parts = field_parts(text_field), field_parts(id_field)
    lines = objects = has_text = has_id = 0
    key_type: KeyType | None = None
    with open_jsonl(file) as fh:
        for _, line in numbered(fh, file):
            lines += 1
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                objects += 1
                has_text += get_field(obj, text_field, text_parts) is not MISSING
                if id_field is not None:
                    value = get_field(obj, id_field, id_parts)
                    has_id += value is not MISSING
                    key_type = key_type or key_kind(value)
            if lines == SNIFF_LINES:
                break
    if lines == 0:
        raise InputError("file has no records (only blank lines)", path=file.source)
    if objects == 0:
        raise InputError(
            f"does not look like JSONL: none of the first {lines} non-blank lines is a "
            "JSON object" + _gzip_hint(file),
            path=file.source,
        )
    # A field absent from every sampled record is almost surely a misspelt field name;
    # stopping here saves a run that would turn every row into an error.
    for field, hits in ((text_field, has_text), (id_field, has_id)):
        if field is not None and hits == 0:
            raise InputError(
                f"none of the first {objects} records has this field",
                path=file.source,
                field=field,
            )
    return key_type


def read_jsonl(
    file: InputFile,
    *,
    text_field: str,
    id_field: str | None,
    batch_size: int,
    make: MakeRow,
) -> Iterator[list[Row | ErrorRecord]]:
    """Yield the file's rows and error records in batches of at most ``batch_size``."""
    source = file.source
    text_parts, id_parts = field_parts(text_field), field_parts(id_field)
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    batch: list[Row | ErrorRecord] = []
    with open_jsonl(file) as fh:
        for lineno, line in numbered(fh, file):
            try:
                obj = loads(line)
            except decode_error as err:
                item: Row | ErrorRecord = _bad_line(line, err, source, lineno, text_field, id_field)
            else:
                if type(obj) is dict:
                    text = obj.get(text_field, MISSING)
                    if text is MISSING and text_parts:
                        text = dig(obj, text_parts)
                    value = None if id_field is None else get_field(obj, id_field, id_parts)
                    item = make(value, text, source, lineno, len(line), True)
                else:
                    reason = f"line is {json_type(obj)}, not a JSON object"
                    item = row_error(f"{source}:{lineno}", source, f"line {lineno}", None, reason)
            batch.append(item)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def _bad_line(
    line: bytes,
    err: orjson.JSONDecodeError,
    source: str,
    lineno: int,
    text_field: str,
    id_field: str | None,
) -> ErrorRecord:
    """Describe a line orjson refused: invalid UTF-8 (with its offset) or malformed JSON."""
    location, derived = f"line {lineno}", f"{source}:{lineno}"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        # Parse a repaired copy to learn the id and whether the bad bytes sit in the text.
        field: str | None = None
        key: RowKey = derived
        try:
            obj = orjson.loads(line.decode("utf-8", errors="replace"))
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict:
            text = get_field(obj, text_field, field_parts(text_field))
            if type(text) is str and "\ufffd" in text:
                field = text_field
            if id_field is not None:
                key = as_key(get_field(obj, id_field, field_parts(id_field)), derived)
        reason = f"invalid UTF-8 at byte {bad.start} of the line ({bad.reason})"
        return row_error(key, source, location, field, reason)
    reason = f"malformed JSON at column {err.colno}: {err.msg}"
    return row_error(derived, source, location, None, reason)


class _ClosingGzip(gzip.GzipFile):
    """A gzip reader over a stream it owns: closing it closes the stream too."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_jsonl(file: InputFile) -> gzip.GzipFile | io.BufferedReader:
    """Open a JSONL input for binary line reading; an OS failure becomes InputError."""
    try:
        if file.fs is None:
            return gzip.open(file.path, "rb") if file.compressed else open(file.path, "rb")
        raw = file.open()
        return _ClosingGzip(raw) if file.compressed else raw  # type: ignore[return-value]
    except FileNotFoundError as err:
        raise InputError("no such file", path=file.source) from err
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err


def numbered(fh: gzip.GzipFile | io.BufferedReader, file: InputFile) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line) for each non-blank line, a leading BOM removed.

    gzip and I/O failures midway become InputError naming the line reached.
    """
    lineno = 0
    try:
        first = fh.readline()
        lineno = 1
        if first.startswith(_BOM):
            first = first[len(_BOM) :]
        lines = chain((first,), fh)
        del first  # a giant first line is not kept for the whole file
        for lineno, line in enumerate(lines, start=1):
            if line and not line.isspace():
                yield lineno, line
    except (OSError, EOFError, zlib.error) as err:
        reason = "not a gzip file" if isinstance(err, gzip.BadGzipFile) else str(err)
        if isinstance(err, EOFError):
            reason = "gzip stream is truncated"
        location = None if lineno <= 1 else f"line {lineno}"
        raise InputError(reason, path=file.source, location=location) from err


def _gzip_hint(file: InputFile) -> str:
    """A hint when an uncompressed-named file starts like gzip."""
    if file.compressed:
        return ""
    with file.open() as fh:
        magic = fh.read(2)
    return " (it looks gzip-compressed: name it .jsonl.gz)" if magic == b"\x1f\x8b" else ""
