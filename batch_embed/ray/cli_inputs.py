"""The inputs of ``batch-embed run --engine ray``: resolved files -> one Ray dataset of rows.

The files are found as the local engine finds them (:func:`batch_embed.inputs.resolve_inputs`,
object storage through :mod:`batch_embed.storage`) and checked as it checks them
(:meth:`batch_embed.reader.Reader.preflight` on the first ``PREFLIGHT_FILES``: a missing
text or id field is an InputError naming the file and the field, before any paid call).
Then Ray Data reads them (``read_parquet`` / ``read_json``, with each file's pyarrow file
system) and :func:`rows_of` turns every block into the four columns the run needs: ``id``
(int64 or string, the run's one key type), ``text``, ``text_sha256`` and ``bad`` (why the
row cannot be embedded, null when it can; its text is then null, so it is never submitted).

A file after the first ``PREFLIGHT_FILES`` that lacks a field is not refused: its rows come
out with ``bad`` set and end in the errors output, each naming the field.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray

from ..errors import ConfigError
from ..fields import KeyType, arrow_field, is_text_type
from ..inputs import InputFile
from ..models import ModelSpec
from ..reader import Reader, ReaderConfig
from ..records import text_hash

PREFLIGHT_FILES = 16
"""How many input files are checked before the run (footers, first lines): the rest are
read by the cluster only."""

ID, TEXT, TEXT_HASH, BAD = "id", "text", "text_sha256", "bad"
ROW_SCHEMA_TYPES = {TEXT: pa.string(), TEXT_HASH: pa.string(), BAD: pa.string()}
_KEY_TYPES: dict[KeyType, pa.DataType] = {"int": pa.int64(), "str": pa.string()}


@dataclass(frozen=True, slots=True)
class Fields:
    """What to read from each row, settled by :func:`preflight`."""

    text_field: str
    id_field: str
    key_type: KeyType


def preflight(
    files: Sequence[InputFile], *, text_field: str, id_field: str | None, model: ModelSpec
) -> Fields:
    """Check the first files as the local engine does; settle the id field and key type.

    Raises InputError (a missing field, an unreadable file) or ConfigError (no id at all:
    derived ``<file>:<line>`` keys need line numbers, which Ray Data's parallel reads do
    not keep).
    """
    reader = Reader(
        files[:PREFLIGHT_FILES],
        ReaderConfig(text_field=text_field, id_field=id_field, model=model),
    )
    reader.preflight()
    if reader.id_field is None:
        raise ConfigError(
            "--engine ray needs row ids: give --id-field, or an 'id' field in the input "
            "(keys derived from <file>:<line> need line numbers, which Ray Data's parallel "
            "reads do not keep)"
        )
    return Fields(text_field, reader.id_field, reader.key_type)


def read_inputs(files: Sequence[InputFile], fields: Fields) -> ray.data.Dataset:
    """One dataset of every input row, as :func:`rows_of` shapes them."""
    groups: dict[tuple[str, bool, int], list[InputFile]] = {}
    for file in files:
        groups.setdefault((file.format, file.compressed, id(file.fs)), []).append(file)
    parts = []
    for (fmt, compressed, _), group in groups.items():
        fs = group[0].fs or pafs.LocalFileSystem()
        paths = [_path(f) for f in group]
        if fmt == "parquet":
            columns = sorted({fields.text_field.split(".")[0], fields.id_field.split(".")[0]})
            ds = ray.data.read_parquet(paths, filesystem=fs, columns=_existing(group, columns))
        else:
            # pyarrow's JSON reader (the default, not lines=True: that one is pandas') reads
            # one object per line, and takes the file system.
            ds = ray.data.read_json(
                paths,
                filesystem=fs,
                file_extensions=None,
                arrow_open_stream_args={"compression": "gzip"} if compressed else None,
            )
        parts.append(
            ds.map_batches(functools.partial(rows_of, fields=fields), batch_format="pyarrow")
        )
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _path(file: InputFile) -> str:
    return file.path.as_posix() if file.fs is not None else str(Path(file.path).resolve())


def _existing(group: Sequence[InputFile], columns: list[str]) -> list[str] | None:
    """The wanted columns the first file has (read_parquet refuses a missing one: the
    rows then say it), or None (all columns) when it cannot tell."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(group[0].parquet()).names)
    except (pa.ArrowException, OSError):
        return None
    present = [c for c in columns if c in names]
    return present if len(present) == len(columns) else None


def rows_of(batch: pa.Table, *, fields: Fields) -> pa.Table:
    """A block of an input file -> ``id``, ``text``, ``text_sha256``, ``bad`` (see module doc)."""
    n = batch.num_rows
    problems: list[str | None] = [None] * n
    ids, id_problem = _id_column(batch, fields)
    texts = _column(batch, fields.text_field)
    if texts is None:
        text_values: list[object] = [None] * n
        text_problem: str | None = f"field {fields.text_field!r}: text field is missing"
    elif not is_text_type(texts.type):
        text_values = [None] * n
        text_problem = f"field {fields.text_field!r}: text must be a string, got {texts.type}"
    else:
        text_values, text_problem = pc.cast(texts, pa.string()).to_pylist(), None
    id_values = ids.to_pylist()
    out_texts: list[str | None] = []
    hashes: list[str | None] = []
    for i in range(n):
        text = text_values[i]
        problem = id_problem or (
            f"field {fields.id_field!r}: id is null" if id_values[i] is None else None
        )
        if problem is None and text_problem is not None:
            problem = text_problem
        elif problem is None and text is None:
            problem = f"field {fields.text_field!r}: text is null"
        elif problem is None and isinstance(text, str) and (not text or text.isspace()):
            what = "empty" if not text else "only whitespace"
            problem = f"field {fields.text_field!r}: text is {what}"
        problems[i] = problem
        ok = problem is None and isinstance(text, str)
        out_texts.append(text if ok and isinstance(text, str) else None)
        hashes.append(text_hash(text) if isinstance(text, str) else None)
    return pa.table(
        {
            ID: ids,
            TEXT: pa.array(out_texts, pa.string()),
            TEXT_HASH: pa.array(hashes, pa.string()),
            BAD: pa.array(problems, pa.string()),
        }
    )


def _id_column(batch: pa.Table, fields: Fields) -> tuple[pa.Array, str | None]:
    """The ids as the run's key type, and the problem of the whole block (None: fine)."""
    key_type = _KEY_TYPES[fields.key_type]
    column = _column(batch, fields.id_field)
    where = f"field {fields.id_field!r}"
    if column is None:
        return pa.nulls(batch.num_rows, key_type), f"{where}: id is missing"
    wanted = pa.types.is_integer if fields.key_type == "int" else is_text_type
    if not wanted(column.type):
        word = "an integer" if fields.key_type == "int" else "a string"
        return (
            pa.nulls(batch.num_rows, key_type),
            f"{where}: id must be {word} (this run's ids are), got {column.type}",
        )
    return pc.cast(column, key_type), None


def _column(batch: pa.Table, name: str) -> pa.ChunkedArray | pa.Array | None:
    """A (possibly dotted) field of ``batch``, or None when the block does not have it."""
    found = arrow_field(batch.schema, name)
    if found is None:
        return None
    path, _ = found
    column: pa.ChunkedArray | pa.Array = batch.column(path[0])
    for part in path[1:]:
        column = pc.struct_field(column, part)
    return column
