"""Stage 1: read JSONL and Parquet inputs as a stream of row batches.

Problems travel on two channels. A problem with a whole file (missing, unreadable, empty,
wrong format or schema) raises :class:`InputError` from :meth:`Reader.preflight`, which looks at
every input cheaply (the first lines of a JSONL file, a Parquet footer) before anything is
submitted. A problem with one row becomes an :class:`ErrorRecord` in the stream and reading goes
on. Memory is bounded by one batch: JSONL is read line by line, Parquet batch by batch with only
the needed columns.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Literal, cast

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import ConfigError, InputError
from .models import ModelSpec
from .records import ErrorKind, ErrorRecord, Row, RowKey, text_hash
from .tokens import encode as encode_tokens
from .tokens import truncate as truncate_tokens

Format = Literal["jsonl", "parquet"]
KeyType = Literal["int", "str"]

SUFFIXES: dict[str, tuple[Format, bool]] = {
    ".jsonl": ("jsonl", False),
    ".ndjson": ("jsonl", False),
    ".jsonl.gz": ("jsonl", True),
    ".ndjson.gz": ("jsonl", True),
    ".parquet": ("parquet", False),
}
"""Accepted file name endings (matched case-insensitively) -> (format, gzip-compressed)."""

SNIFF_LINES = 100
"""How many non-blank lines of each JSONL file the preflight parses."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BOM = b"\xef\xbb\xbf"
_GLOB_CHARS = frozenset("*?[")
_MISSING = object()
_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_JSON_TYPES.update({dict: "an object", list: "an array", type(None): "null"})
_PAGE_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class InputFile:
    """One resolved input file; ``source`` is its name in messages and derived keys."""

    path: Path
    source: str
    format: Format
    compressed: bool


@dataclass(slots=True)
class FileStats:
    """Counters of one input file; ``rows_read`` counts records (blank lines are not records)."""

    rows_read: int = 0
    rows_ok: int = 0
    rows_bad: int = 0
    truncated: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderConfig:
    """What to read from each record and how to batch it.

    ``text_field`` and ``id_field`` may be dotted paths into nested objects or Parquet structs
    (``meta.body``); a top-level key that literally contains the dot wins. Without
    ``id_field``, keys are derived as ``"<source>:<line>"`` (JSONL) or ``"<source>:<row>"``.
    """

    text_field: str = "text"
    id_field: str | None = None
    truncate: bool = False
    batch_size: int = 512
    model: ModelSpec

    def __post_init__(self) -> None:
        if not self.text_field:
            raise ConfigError("text_field: must be a non-empty field name")
        if self.id_field is not None and not self.id_field:
            raise ConfigError("id_field: must be a non-empty field name or None")
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"batch_size: must be a positive integer, got {self.batch_size!r}")


def _classify(name: str) -> tuple[Format, bool] | None:
    lower = name.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _input_file(path: Path, source: str) -> InputFile | None:
    kind = _classify(path.name)
    return None if kind is None else InputFile(path, source, kind[0], kind[1])


def _expand(pattern: str) -> list[InputFile]:
    """Resolve one user-given name: a file, a directory (recursive) or a glob."""
    path = Path(pattern)
    accepted = ", ".join(SUFFIXES)
    try:
        is_dir, is_file = path.is_dir(), path.exists() and not path.is_dir()
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}", path=pattern) from err
    if is_file:
        found = _input_file(path, pattern)
        if found is None:
            raise InputError(f"unknown file type; accepted endings: {accepted}", path=pattern)
        return [found]
    if is_dir:
        # Hidden files and folders are skipped, like pyarrow's dataset discovery does.
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_root = Path(root).relative_to(path)
            for name in names:
                if name.startswith("."):
                    continue
                rel = (rel_root / name).as_posix()
                found = _input_file(Path(root, name), os.path.join(pattern, rel))
                if found is not None:
                    files.append((rel, found))
        if not files:
            raise InputError(f"directory holds no input files ({accepted})", path=pattern)
        return [found for _, found in sorted(files, key=lambda pair: pair[0])]
    if _GLOB_CHARS.isdisjoint(pattern):
        raise InputError("no such file or directory", path=pattern)
    matches = sorted(glob.glob(pattern, recursive=True))
    found_files = [f for m in matches if os.path.isfile(m) and (f := _input_file(Path(m), m))]
    if not found_files:
        what = f"{len(matches)} paths, none an input file" if matches else "nothing"
        raise InputError(f"pattern matches {what} ({accepted})", path=pattern)
    return found_files


def resolve_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """Expand file names, directories and globs into input files, in a stable order.

    Directories are walked recursively and their files sorted by relative path; a file's
    ``source`` keeps the spelling the user gave (``data/sub/a.jsonl`` for the directory
    ``data``), so derived keys are stable across runs. A file reached twice is read once.
    """
    if isinstance(patterns, str) or not patterns:
        raise ConfigError("inputs: give a list of one or more files, directories or globs")
    seen: set[Path] = set()
    result = []
    for pattern in patterns:
        for found in _expand(pattern):
            real = found.path.resolve()
            if real not in seen:
                seen.add(real)
                result.append(found)
    return result


def _dig(obj: dict[str, object], parts: tuple[str, ...]) -> object:
    """Follow a dotted path through nested objects; _MISSING when any step is absent."""
    value: object = obj
    for part in parts:
        if type(value) is not dict:
            return _MISSING
        value = value.get(part, _MISSING)
    return value


def _get(obj: dict[str, object], name: str, parts: tuple[str, ...]) -> object:
    value = obj.get(name, _MISSING)
    if value is _MISSING and parts:
        return _dig(obj, parts)
    return value


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _id_problem(value: object, key_type: KeyType) -> str | None:
    """Why an id value is unusable as a key of ``key_type``; None when it is fine."""
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            return f"id {value} is outside the int64 range"
        if key_type == "str":
            return "id is an integer, but this run's ids are strings"
        return None
    if type(value) is str:
        if key_type == "int":
            return "id is a string, but this run's ids are integers"
        return None
    if value is _MISSING:
        return "id is missing"
    if value is None:
        return "id is null"
    return f"id must be an integer or a string, got {_json_type(value)}"


def _key_kind(value: object) -> KeyType | None:
    """The key type of a value usable as a key (a string, an int64), else None."""
    if type(value) is str:
        return "str"
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return "int"
    return None


def _as_key(value: object, fallback: str) -> RowKey:
    """The row's id when it can be a key at all, else the derived key (for error records)."""
    return cast(RowKey, value) if _key_kind(value) else fallback


def _is_text_type(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    )


def _arrow_field(schema: pa.Schema, name: str) -> tuple[tuple[str, ...], pa.DataType] | None:
    """Find a (possibly dotted) field in a schema: its path of names and its type."""
    if name in schema.names:
        return (name,), schema.field(name).type
    parts = tuple(name.split("."))
    if len(parts) == 1 or parts[0] not in schema.names:
        return None
    dtype = schema.field(parts[0]).type
    for part in parts[1:]:
        if not pa.types.is_struct(dtype) or dtype.get_field_index(part) < 0:
            return None
        dtype = dtype.field(part).type
    return parts, dtype


def _column_values(batch: pa.RecordBatch, path: tuple[str, ...]) -> list[object]:
    """Return one column (a struct child when the path is dotted) as Python values.

    Arrow does not validate UTF-8 when reading Parquet, so a bad string surfaces here; then
    the values are decoded one by one and a bad one becomes ``bytes`` for the caller to report.
    """
    array: pa.Array = batch.column(batch.schema.get_field_index(path[0]))
    for part in path[1:]:
        array = pc.struct_field(array, part)  # keeps the parent's nulls, unlike .field()
    try:
        return array.to_pylist()  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        raw = array.view(
            {pa.string(): pa.binary(), pa.large_string(): pa.large_binary()}.get(
                array.type, pa.binary_view()
            )
        )
        values: list[object] = []
        for item in raw.to_pylist():
            try:
                values.append(item if item is None else item.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(item)
        return values


def _bytes_exceed(text: str, limit: int) -> bool:
    """True when the UTF-8 form of ``text`` is longer than ``limit`` bytes, cheaply."""
    if len(text) > limit:
        return True
    return not text.isascii() and len(text.encode("utf-8")) > limit


class Reader:
    """Reads the resolved inputs as batches of :class:`Row` and :class:`ErrorRecord`.

    ``stats`` holds a :class:`FileStats` per source, up to date after each batch.
    """

    def __init__(self, files: Sequence[InputFile], config: ReaderConfig) -> None:
        self.files = list(files)
        self.config = config
        self.stats: dict[str, FileStats] = {f.source: FileStats() for f in self.files}
        self._key_type: KeyType | None = None

    @property
    def key_type(self) -> KeyType:
        """The type of every key in this run, known after :meth:`preflight`."""
        if self._key_type is None:
            raise RuntimeError("key_type is known only after preflight()")
        return self._key_type

    def preflight(self) -> None:
        """Check every input as a whole and settle ``key_type``; raise InputError on a problem.

        Cheap by design: a Parquet file's footer, and the first ``SNIFF_LINES`` non-blank
        lines of a JSONL file. The key type comes from the first file that shows one (a Parquet
        id column's type, or the first usable id in a JSONL file); derived keys are strings.
        """
        key_type: KeyType | None = None if self.config.id_field else "str"
        for file in self.files:
            try:
                size = file.path.stat().st_size
            except FileNotFoundError as err:
                raise InputError("no such file", path=file.source) from err
            except OSError as err:
                raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err
            if size == 0:
                raise InputError("file is empty", path=file.source)
            if file.format == "parquet":
                seen = self._preflight_parquet(file)
            else:
                seen = self._preflight_jsonl(file)
            if key_type is None:
                key_type = seen
            elif file.format == "parquet" and seen is not None and seen != key_type:
                field = self.config.id_field
                raise InputError(
                    f"id column holds {_TYPE_WORD[seen]} but earlier inputs have "
                    f"{_TYPE_WORD[key_type]} ids; all ids of a run must have one type",
                    path=file.source,
                    field=field,
                )
        # No file showed a usable id (all null or floats so far): rows will say why.
        self._key_type = key_type or "str"

    def _preflight_parquet(self, file: InputFile) -> KeyType | None:
        try:
            with pq.ParquetFile(file.path) as pf:
                num_rows, schema = pf.metadata.num_rows, pf.schema_arrow
        except PermissionError as err:
            raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"not a readable Parquet file ({err})", path=file.source) from err
        if num_rows == 0:
            raise InputError("file has no rows", path=file.source)
        text_field = self.config.text_field
        found = _arrow_field(schema, text_field)
        if found is None:
            raise InputError("no such column", path=file.source, field=text_field)
        if not _is_text_type(found[1]):
            raise InputError(
                f"column has type {found[1]}, not a string type", path=file.source, field=text_field
            )
        id_field = self.config.id_field
        if id_field is None:
            return None
        found = _arrow_field(schema, id_field)
        if found is None:
            raise InputError("no such id column", path=file.source, field=id_field)
        if pa.types.is_integer(found[1]):
            return "int"
        if _is_text_type(found[1]):
            return "str"
        raise InputError(
            f"id column has type {found[1]}; ids must be integers or strings",
            path=file.source,
            field=id_field,
        )

    def _preflight_jsonl(self, file: InputFile) -> KeyType | None:
        text_field, id_field = self.config.text_field, self.config.id_field
        text_parts, id_parts = _parts(text_field), _parts(id_field)
        lines = objects = has_text = has_id = 0
        key_type: KeyType | None = None
        with _open_jsonl(file) as fh:
            for _, line in _numbered(fh, file):
                lines += 1
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    obj = None
                if type(obj) is dict:
                    objects += 1
                    has_text += _get(obj, text_field, text_parts) is not _MISSING
                    if id_field is not None:
                        value = _get(obj, id_field, id_parts)
                        has_id += value is not _MISSING
                        key_type = key_type or _key_kind(value)
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

    def batches(self) -> Iterator[list[Row | ErrorRecord]]:
        """Yield lists of at most ``batch_size`` rows and error records, file by file, lazily.

        Runs :meth:`preflight` first if it has not run. A batch never spans two files. A file
        that breaks midway (a truncated gzip stream, a corrupt Parquet page) raises InputError
        with the location reached.
        """
        if self._key_type is None:
            self.preflight()
        for file in self.files:
            self.stats[file.source] = FileStats()
            if file.format == "jsonl":
                yield from self._read_jsonl(file)
            else:
                yield from self._read_parquet(file)

    def _make(
        self, id_value: object, text: object, source: str, index: int, raw_len: int, jsonl: bool
    ) -> Row | ErrorRecord:
        """Check one record's id and text and build its row or its error record.

        ``index`` is the line number (JSONL) or row index (Parquet); ``raw_len`` is any upper
        bound of the text's UTF-8 length that is cheap to know, so that only texts that could
        be over the limit are tokenized (a token is at least one byte).
        """
        config = self.config
        location = f"line {index}" if jsonl else f"row {index}"
        if config.id_field is None:
            key: RowKey = f"{source}:{index}"
        else:
            problem = _id_problem(id_value, self.key_type)
            if problem is not None:
                key = _as_key(id_value, f"{source}:{index}")
                return _error(key, source, location, config.id_field, problem)
            key = cast(RowKey, id_value)
        problem = _text_problem(text)
        if problem is not None:
            return _error(key, source, location, config.text_field, problem)
        text = cast(str, text)
        limit = config.model.max_tokens
        if raw_len > limit and _bytes_exceed(text, limit):
            ids = encode_tokens(text)
            if len(ids) > limit:
                if not config.truncate:
                    reason = (
                        f"text has {len(ids)} tokens, more than the model's limit of {limit} "
                        "(truncation is off)"
                    )
                    kind = ErrorKind.TOO_LONG
                    return _error(key, source, location, config.text_field, reason, kind)
                text = truncate_tokens(ids, limit)
                self.stats[source].truncated += 1
        return Row(key, text, source, location, text_hash(text))

    def _read_jsonl(self, file: InputFile) -> Iterator[list[Row | ErrorRecord]]:
        config, source, stats = self.config, file.source, self.stats[file.source]
        text_field, id_field = config.text_field, config.id_field
        text_parts, id_parts = _parts(text_field), _parts(id_field)
        batch_size, loads, decode_error = config.batch_size, orjson.loads, orjson.JSONDecodeError
        make = self._make
        batch: list[Row | ErrorRecord] = []
        with _open_jsonl(file) as fh:
            for lineno, line in _numbered(fh, file):
                try:
                    obj = loads(line)
                except decode_error as err:
                    item: Row | ErrorRecord = self._bad_line(line, err, source, lineno)
                else:
                    if type(obj) is dict:
                        text = obj.get(text_field, _MISSING)
                        if text is _MISSING and text_parts:
                            text = _dig(obj, text_parts)
                        value = None if id_field is None else _get(obj, id_field, id_parts)
                        item = make(value, text, source, lineno, len(line), True)
                    else:
                        reason = f"line is {_json_type(obj)}, not a JSON object"
                        item = _error(f"{source}:{lineno}", source, f"line {lineno}", None, reason)
                batch.append(item)
                if len(batch) >= batch_size:
                    _count(stats, batch)
                    yield batch
                    batch = []
        if batch:
            _count(stats, batch)
            yield batch

    def _bad_line(
        self, line: bytes, err: orjson.JSONDecodeError, source: str, lineno: int
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
                text_field, id_field = self.config.text_field, self.config.id_field
                text = _get(obj, text_field, _parts(text_field))
                if type(text) is str and "\ufffd" in text:
                    field = text_field
                if id_field is not None:
                    key = _as_key(_get(obj, id_field, _parts(id_field)), derived)
            reason = f"invalid UTF-8 at byte {bad.start} of the line ({bad.reason})"
            return _error(key, source, location, field, reason)
        reason = f"malformed JSON at column {err.colno}: {err.msg}"
        return _error(derived, source, location, None, reason)

    def _read_parquet(self, file: InputFile) -> Iterator[list[Row | ErrorRecord]]:
        config, source, stats = self.config, file.source, self.stats[file.source]
        text_field, id_field = config.text_field, config.id_field
        make = self._make
        row = 0
        try:
            # pre_buffer=False streams pages: memory stays one batch, however big the row group.
            with pq.ParquetFile(file.path, pre_buffer=False, buffer_size=_PAGE_BUFFER) as pf:
                schema = pf.schema_arrow
                text_path = _arrow_field(schema, text_field)
                id_path = None if id_field is None else _arrow_field(schema, id_field)
                if text_path is None or (id_field is not None and id_path is None):
                    raise InputError("schema changed since preflight", path=source)
                columns = [text_field] if id_field is None else [text_field, id_field]
                for record_batch in pf.iter_batches(batch_size=config.batch_size, columns=columns):
                    texts = _column_values(record_batch, text_path[0])
                    ids: Iterable[object] = (
                        repeat(None)
                        if id_path is None
                        else _column_values(record_batch, id_path[0])
                    )
                    batch: list[Row | ErrorRecord] = [
                        make(
                            value,
                            text,
                            source,
                            row + i,
                            4 * len(text) if type(text) is str else 0,
                            False,
                        )
                        for i, (text, value) in enumerate(zip(texts, ids, strict=False))
                    ]
                    row += len(batch)
                    _count(stats, batch)
                    yield batch
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"reading failed: {err}", path=source, location=f"row {row}") from err


def _count(stats: FileStats, batch: list[Row | ErrorRecord]) -> None:
    bad = sum(type(item) is ErrorRecord for item in batch)
    stats.rows_read += len(batch)
    stats.rows_bad += bad
    stats.rows_ok += len(batch) - bad


_TYPE_WORD: dict[KeyType, str] = {"int": "integer", "str": "string"}


def _parts(field: str | None) -> tuple[str, ...]:
    """The nested interpretation of a field name; empty when it has no dot."""
    if field is None or "." not in field:
        return ()
    return tuple(field.split("."))


def _text_problem(text: object) -> str | None:
    """Why a text value cannot be embedded; None when it can."""
    if type(text) is str:
        if not text or text.isspace():
            return "text is empty" if not text else "text is only whitespace"
        return None
    if text is _MISSING:
        return "text field is missing"
    if text is None:
        return "text is null"
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"invalid UTF-8 at byte {bad.start} of the text ({bad.reason})"
    return f"text must be a string, got {_json_type(text)}"


def _error(
    key: RowKey,
    source: str,
    location: str,
    field: str | None,
    reason: str,
    kind: ErrorKind = ErrorKind.BAD_INPUT,
) -> ErrorRecord:
    where = f"{source}, {location}" if field is None else f"{source}, {location}, field {field!r}"
    return ErrorRecord(key, source, location, kind, f"{where}: {reason}", field)


def _open_jsonl(file: InputFile) -> gzip.GzipFile | io.BufferedReader:
    """Open a JSONL input for binary line reading; an OS failure becomes InputError."""
    try:
        if file.compressed:
            return gzip.open(file.path, "rb")
        return open(file.path, "rb")
    except FileNotFoundError as err:
        raise InputError("no such file", path=file.source) from err
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err


def _numbered(
    fh: gzip.GzipFile | io.BufferedReader, file: InputFile
) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line) for each non-blank line, a leading BOM removed.

    gzip and I/O failures midway become InputError naming the line reached.
    """
    lineno = 0
    try:
        first = fh.readline()
        lineno = 1
        if first.startswith(_BOM):
            first = first[len(_BOM) :]
        for lineno, line in enumerate(chain((first,), fh), start=1):
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
    with open(file.path, "rb") as fh:
        magic = fh.read(2)
    return " (it looks gzip-compressed: name it .jsonl.gz)" if magic == b"\x1f\x8b" else ""
