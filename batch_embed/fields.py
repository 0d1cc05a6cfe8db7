"""Fields and values of one record: dotted paths, id and text checks, row error records.

Shared by the JSONL and Parquet readers, so that both formats judge a row the same way: an
id must be an int64 or a string of the run's one key type; a text must be a non-blank
string. Every problem becomes an :class:`ErrorRecord` whose message names the file, the
line or row, and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import pyarrow as pa

from .records import ErrorKind, ErrorRecord, Row, RowKey

KeyType = Literal["int", "str"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MISSING = object()
"""Stands for a field the record does not have (distinct from a JSON null)."""
_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_JSON_TYPES.update({dict: "an object", list: "an array", type(None): "null"})
TYPE_WORD: dict[KeyType, str] = {"int": "integer", "str": "string"}

MakeRow = Callable[[object, object, str, int, int, bool], Row | ErrorRecord]
"""Builds a row or its error from (id value, text, source, index, byte bound, is JSONL)."""


def dig(obj: dict[str, object], parts: tuple[str, ...]) -> object:
    """Follow a dotted path through nested objects; MISSING when any step is absent."""
    value: object = obj
    for part in parts:
        if type(value) is not dict:
            return MISSING
        value = value.get(part, MISSING)
    return value


def get_field(obj: dict[str, object], name: str, parts: tuple[str, ...]) -> object:
    value = obj.get(name, MISSING)
    if value is MISSING and parts:
        return dig(obj, parts)
    return value


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def id_problem(value: object, key_type: KeyType) -> str | None:
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
    if value is MISSING:
        return "id is missing"
    if value is None:
        return "id is null"
    return f"id must be an integer or a string, got {json_type(value)}"


def key_kind(value: object) -> KeyType | None:
    """The key type of a value usable as a key (a string, an int64), else None."""
    if type(value) is str:
        return "str"
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return "int"
    return None


def as_key(value: object, fallback: str) -> RowKey:
    """The row's id when it can be a key at all, else the derived key (for error records)."""
    return cast(RowKey, value) if key_kind(value) else fallback


def is_text_type(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    )


def arrow_field(schema: pa.Schema, name: str) -> tuple[tuple[str, ...], pa.DataType] | None:
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


def bytes_exceed(text: str, limit: int) -> bool:
    """True when the UTF-8 form of ``text`` is longer than ``limit`` bytes, cheaply."""
    if len(text) > limit:
        return True
    return not text.isascii() and len(text.encode("utf-8")) > limit


def field_parts(field: str | None) -> tuple[str, ...]:
    """The nested interpretation of a field name; empty when it has no dot."""
    if field is None or "." not in field:
        return ()
    return tuple(field.split("."))


def text_problem(text: object) -> str | None:
    """Why a text value cannot be embedded; None when it can."""
    if type(text) is str:
        if not text or text.isspace():
            return "text is empty" if not text else "text is only whitespace"
        return None
    if text is MISSING:
        return "text field is missing"
    if text is None:
        return "text is null"
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"invalid UTF-8 at byte {bad.start} of the text ({bad.reason})"
    return f"text must be a string, got {json_type(text)}"


def row_error(
    key: RowKey,
    source: str,
    location: str,
    field: str | None,
    reason: str,
    kind: ErrorKind = ErrorKind.BAD_INPUT,
) -> ErrorRecord:
    where = f"{source}, {location}" if field is None else f"{source}, {location}, field {field!r}"
    return ErrorRecord(key, source, location, kind, f"{where}: {reason}", field)


def duplicate_id_message(key: RowKey, where: str, field: str | None, earlier: str | None) -> str:
    """Why a row whose id an earlier row of the run used, with another text, is not
    embedded; ``where`` and ``earlier`` are ``"<file>, line N"`` (``earlier`` None: unknown)."""
    return (
        f"{where}, field {field!r}: id {key!r} was already used by "
        f"{earlier or 'an earlier row'} with a different text; this row is not embedded"
    )
