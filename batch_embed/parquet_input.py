"""The Parquet format: a preflight from the footer alone, then rows batch by batch.

Only the text and id columns are read, a batch at a time with pages streamed
(``pre_buffer=False``), so memory stays one batch however large the row groups are. Row
numbers are 0-based, as pyarrow counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import InputError
from .fields import KeyType, MakeRow, arrow_field, is_text_type
from .inputs import InputFile
from .records import ErrorRecord, Row

_PAGE_BUFFER = 1 << 20


def has_column(file: InputFile, name: str) -> bool:
    """True when the file's schema has a top-level column ``name`` (False if unreadable)."""
    try:
        return name in pq.read_schema(file.parquet()).names
    except (pa.ArrowException, OSError):
        return False  # the preflight reports what is wrong with the file


def preflight_parquet(file: InputFile, text_field: str, id_field: str | None) -> KeyType | None:
    """Check the footer: rows, the text column's type, the id column's type (its key type)."""
    try:
        with pq.ParquetFile(file.parquet()) as pf:
            num_rows, schema = pf.metadata.num_rows, pf.schema_arrow
    except PermissionError as err:
        raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"not a readable Parquet file ({err})", path=file.source) from err
    if num_rows == 0:
        raise InputError("file has no rows", path=file.source)
    found = arrow_field(schema, text_field)
    if found is None:
        raise InputError("no such column", path=file.source, field=text_field)
    if not is_text_type(found[1]):
        raise InputError(
            f"column has type {found[1]}, not a string type", path=file.source, field=text_field
        )
    if id_field is None:
        return None
    found = arrow_field(schema, id_field)
    if found is None:
        raise InputError("no such id column", path=file.source, field=id_field)
    if pa.types.is_integer(found[1]):
        return "int"
    if is_text_type(found[1]):
        return "str"
    raise InputError(
        f"id column has type {found[1]}; ids must be integers or strings",
        path=file.source,
        field=id_field,
    )


def read_parquet(
    file: InputFile,
    *,
    text_field: str,
    id_field: str | None,
    batch_size: int,
    make: MakeRow,
) -> Iterator[list[Row | ErrorRecord]]:
    """Yield the file's rows and error records in batches of at most ``batch_size``."""
    source = file.source
    row = 0
    try:
        with pq.ParquetFile(file.parquet(), pre_buffer=False, buffer_size=_PAGE_BUFFER) as pf:
            schema = pf.schema_arrow
            text_path = arrow_field(schema, text_field)
            id_path = None if id_field is None else arrow_field(schema, id_field)
            if text_path is None or (id_field is not None and id_path is None):
                raise InputError("schema changed since preflight", path=source)
            columns = [text_field] if id_field is None else [text_field, id_field]
            for record_batch in pf.iter_batches(batch_size=batch_size, columns=columns):
                texts = column_values(record_batch, text_path[0])
                ids: Iterable[object] = (
                    repeat(None) if id_path is None else column_values(record_batch, id_path[0])
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
                yield batch
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"reading failed: {err}", path=source, location=f"row {row}") from err


def column_values(batch: pa.RecordBatch, path: tuple[str, ...]) -> list[object]:
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
