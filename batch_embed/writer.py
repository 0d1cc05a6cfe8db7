"""Stage 4: the Parquet sink, committing vectors in numbered parts, each atomic and durable.

A part is written to ``.part-NNNNNN.parquet.tmp`` (the leading dot hides it from
pyarrow.dataset, and the suffix from DuckDB's ``*.parquet`` globs), flushed, fsynced, renamed
to ``part-NNNNNN.parquet`` and its directory fsynced. A killed process therefore never leaves a
truncated file under a final name, and every committed part is readable on its own. Numbering
continues after the highest part already present, so a resumed run appends and never
overwrites; stray ``.tmp`` files of a killed run are removed when a writer opens the directory.

Columns: ``id`` (int64 or string, as the input had it), ``embedding``
(``fixed_size_list<float32>[dim]``) and ``text_sha256`` (hex). The file's key-value metadata
carries ``batch_embed.model``, ``batch_embed.dim`` and ``batch_embed.version``; each part also
carries a random ``batch_embed.part_id``, which :func:`finalize_single_file` records in the
merged file (``batch_embed.parts``) so that a merge interrupted after its rename never adds a
part twice.

Parquet settings (see :data:`PARQUET_OPTIONS`), measured by ``benchmarks/write_throughput.py``
on 4096 x 3072 random unit vectors (fsync included): compression buys little on float
mantissas (snappy and lz4 save under 1 %; zstd-1 with byte_stream_split saves 16 % but writes
about a third slower), so the embedding column is stored uncompressed, the small columns with
snappy; dictionary encoding is off (ids, hashes and floats are all unique); statistics are kept
for ``id`` only, because min/max of random floats and hashes prune nothing and computing them
cost 15 % or more of the write time. Result: about 39k vectors/s, 480 MB/s, 12.3 KB per row.
The list items stay nullable (plain ``pa.list_(pa.float32(), dim)``) although non-null items
wrote about 10 % faster, so that the type matches what users declare themselves.
"""

from __future__ import annotations

import importlib.metadata
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import ConfigError
from .models import ModelSpec
from .output_store import PART_NAME, RemoteParts, StoredFile, fsync_dir, write_atomically
from .records import RowKey
from .write_failures import writing

KeyType = Literal["int", "str"]

META_MODEL = b"batch_embed.model"
META_DIM = b"batch_embed.dim"
META_VERSION = b"batch_embed.version"
META_PART_ID = b"batch_embed.part_id"
META_PARTS = b"batch_embed.parts"

PARQUET_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "compression": {"id": "snappy", "embedding": "none", "text_sha256": "snappy"},
        "use_dictionary": False,
        "write_statistics": ["id"],
    }
)
"""Keyword arguments given to pyarrow's Parquet writer for parts and merged files."""

_PART_TMP_NAME = re.compile(r"\.part-\d+\.parquet\.tmp")
_ID_TYPES: Mapping[str, pa.DataType] = MappingProxyType({"int": pa.int64(), "str": pa.string()})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _package_version() -> str:
    try:
        return importlib.metadata.version("batch_embed")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_VERSION = _package_version()


@dataclass(frozen=True, slots=True)
class CommittedPart:
    """One part made durable: its final path, the keys of its rows in order, its row count."""

    path: Path
    keys: list[RowKey]
    rows: int


def output_schema(model: ModelSpec, key_type: KeyType) -> pa.Schema:
    """Return the declared output schema, with the model and dimension in its metadata."""
    id_type = _ID_TYPES.get(key_type)
    if id_type is None:
        raise ConfigError(f"key_type: expected 'int' or 'str', got {key_type!r}")
    return pa.schema(
        [
            pa.field("id", id_type, nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), model.output_dim), nullable=False),
            pa.field("text_sha256", pa.string(), nullable=False),
        ],
        metadata={
            META_MODEL: model.slug,
            META_DIM: str(model.output_dim),
            META_VERSION: _VERSION,
        },
    )


class PartWriter:
    """Buffer vectors in one preallocated float32 array and commit them as numbered parts.

    Memory stays at ``rows_per_part x dim x 4`` bytes plus the keys and hashes of one part
    (4096 x 3072 is 48 MB, about one part file). Not thread-safe: call it from one thread at a
    time; ``add`` blocks for a commit when the buffer fills. One writer per directory at a
    time (the journal's lock is what guarantees it).
    """

    def __init__(
        self,
        parts_dir: Path,
        *,
        model: ModelSpec,
        key_type: KeyType,
        rows_per_part: int = 4096,
        on_commit: Callable[[CommittedPart], None] | None = None,
        published: RemoteParts | None = None,
    ) -> None:
        if isinstance(rows_per_part, bool) or not isinstance(rows_per_part, int):
            raise ConfigError(f"rows_per_part: expected an int, got {rows_per_part!r}")
        if rows_per_part < 1:
            raise ConfigError(f"rows_per_part: must be at least 1, got {rows_per_part}")
        self._schema = output_schema(model, key_type)
        self._dim = model.output_dim
        self._int_keys = key_type == "int"
        self._rows_per_part = rows_per_part
        self._on_commit = on_commit
        self._published = published
        self.parts_dir = Path(parts_dir)
        with writing(self.parts_dir):
            self.parts_dir.mkdir(parents=True, exist_ok=True)
        for stray in self.parts_dir.iterdir():
            if _PART_TMP_NAME.fullmatch(stray.name):
                stray.unlink(missing_ok=True)
        existing = [StoredFile.local(p) for p in committed_parts(self.parts_dir)]
        last = existing[-1] if existing else None
        if published is not None:
            remote = published.parts()
            last = remote[-1] if remote else last
        if last is not None:
            _check_schema(last, self._schema)
        self._next_index = _part_index(Path(existing[-1].path)) + 1 if existing else 0
        self._buf: npt.NDArray[np.float32] = np.empty((rows_per_part, self._dim), np.float32)
        self._keys: list[RowKey] = []
        self._hashes: list[str] = []
        self._committed_any = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Rows buffered and not yet committed."""
        return len(self._keys)

    def add(
        self, key: RowKey, text_hash: str, vector: npt.NDArray[np.floating[Any]]
    ) -> CommittedPart | None:
        """Buffer one row; commit and return the part when this row fills the buffer.

        Everything a commit could trip on is checked here, so a bad row is refused alone
        (``TypeError``/``ValueError``, nothing buffered) instead of poisoning a whole part. If
        the commit fails, its exception propagates with this row already buffered; ``add``
        then refuses rows (``RuntimeError``) until a ``commit()`` succeeds, so that the part
        it returns is never lost to the caller.
        """
        if self._closed:
            raise ValueError("PartWriter is closed")
        if self._int_keys:
            if isinstance(key, bool) or not isinstance(key, int):
                raise TypeError(f"key: expected an int (key_type 'int'), got {key!r}")
            if not _INT64_MIN <= key <= _INT64_MAX:
                raise ValueError(f"key: {key} does not fit in int64")
        elif not isinstance(key, str):
            raise TypeError(f"key: expected a str (key_type 'str'), got {key!r}")
        if not isinstance(text_hash, str):
            raise TypeError(f"text_hash: expected a str, got {text_hash!r}")
        if getattr(vector, "shape", None) != (self._dim,):
            shape = getattr(vector, "shape", type(vector).__name__)
            raise ValueError(f"vector: expected an array of shape ({self._dim},), got {shape}")
        n = len(self._keys)
        if n == self._rows_per_part:
            raise RuntimeError("PartWriter: the buffer is full after a failed commit; commit()")
        self._buf[n] = vector  # first, so that a failed cast leaves nothing half-added
        self._keys.append(key)
        self._hashes.append(text_hash)
        if n + 1 == self._rows_per_part:
            return self.commit()
        return None

    def commit(self) -> CommittedPart | None:
        """Write the buffered rows as the next part, atomically; None when nothing is buffered.

        ``on_commit`` runs after the part is durable and the buffer is reset; an exception
        from it propagates, and the part stays committed.
        """
        if self._closed:
            raise ValueError("PartWriter is closed")
        rows = len(self._keys)
        if rows == 0:
            return None
        final = self.parts_dir / f"part-{self._next_index:06d}.parquet"
        _write_table(final, self._table(rows))
        # The part is visible from here on: forget its rows before anything else can fail,
        # so that no retry ever writes them twice.
        part = CommittedPart(path=final, keys=self._keys, rows=rows)
        self._keys, self._hashes = [], []
        self._next_index += 1
        self._committed_any = True
        fsync_dir(self.parts_dir)
        if self._published is not None:
            # Its rows are the output's once published; until then the part waits here,
            # and the next run publishes it before reading what the output holds.
            self._published.publish(final)
        if self._on_commit is not None:
            self._on_commit(part)
        return part

    def close(self) -> None:
        """Commit what is buffered and release the buffer; idempotent.

        When the directory holds no part at all, an empty part is written, so that the output
        always exists with its schema even when no row was embedded. If the commit fails the
        writer stays open and ``close`` can be called again. The keys of the last part reach
        the caller only through ``on_commit``: call ``commit()`` first to get them returned.
        """
        if self._closed:
            return
        self.commit()
        if not self._committed_any and not self._holds_parts():
            empty = self.parts_dir / f"part-{self._next_index:06d}.parquet"
            _write_table(empty, self._table(0))
            fsync_dir(self.parts_dir)
            if self._published is not None:
                self._published.publish(empty)
        self.discard()

    def _holds_parts(self) -> bool:
        if self._published is not None:
            return bool(self._published.parts())
        return bool(committed_parts(self.parts_dir))

    def discard(self) -> None:
        """Drop the buffered rows without writing them and release the buffer; idempotent."""
        self._keys, self._hashes = [], []
        self._closed = True
        self._buf = np.empty((0, self._dim), np.float32)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close normally; when an exception is leaving the block, discard instead.

        A part committed while the caller is failing could reach the output without its keys
        ever being recorded (the journal may be what failed), and a resumed run would then
        write those rows a second time; dropping at most one buffer of rows is the cheaper
        loss: they are embedded again on resume.
        """
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def _table(self, rows: int) -> pa.Table:
        # pa.array over a contiguous float32 view shares the buffer's memory (no copy); the
        # table is written and dropped before the buffer is refilled.
        flat = pa.array(self._buf[:rows].reshape(-1))
        schema = self._schema.with_metadata(
            {**self._schema.metadata, META_PART_ID: uuid.uuid4().hex}
        )
        return pa.Table.from_arrays(
            [
                pa.array(self._keys, type=schema.field("id").type),
                pa.FixedSizeListArray.from_arrays(flat, self._dim),
                pa.array(self._hashes, type=pa.string()),
            ],
            schema=schema,
        )


def committed_parts(parts_dir: Path) -> list[Path]:
    """Return the committed parts of a directory, in part-number order."""
    parts = [p for p in Path(parts_dir).iterdir() if PART_NAME.fullmatch(p.name)]
    return sorted(parts, key=_part_index)


def finalize_single_file(parts_dir: Path, final: StoredFile | Path) -> int:
    """Merge the committed parts into one Parquet file atomically; return its row count.

    Rows already in ``final`` (an earlier run's output) come first, then the parts in
    number order. The merge streams one row group at a time into a temporary file beside the
    final one and replaces it atomically (:meth:`StoredFile.replace`, local or in object
    storage); only then are the merged parts removed. A part whose id the existing file
    already lists (a merge killed before its cleanup) is dropped, not merged again. With
    neither parts nor an existing file, nothing is written and 0 returned.
    """
    if not isinstance(final, StoredFile):
        final = StoredFile.local(final)
    merged_ids: list[str] = []
    sources: list[StoredFile] = []
    if final.exists():
        merged_ids = _merged_part_ids(final)
        sources.append(final)
    already = set(merged_ids)
    new_parts: list[Path] = []
    stale: list[Path] = []
    for part in committed_parts(parts_dir):
        identity = part_id(StoredFile.local(part))
        if identity is not None and identity in already:
            stale.append(part)
            continue
        new_parts.append(part)
        if identity is not None:
            merged_ids.append(identity)
    if not new_parts and not sources:
        return 0
    if sources and all(pq.read_metadata(p).num_rows == 0 for p in new_parts):
        # Nothing to add: keep the existing file rather than rewriting it.
        _remove(stale + new_parts)
        return int(final.metadata().num_rows)
    sources += [StoredFile.local(p) for p in new_parts]

    schema = sources[0].schema()
    for source in sources[1:]:
        _check_schema(source, schema)
    metadata = {k: v for k, v in (schema.metadata or {}).items() if k != META_PART_ID}
    metadata[META_PARTS] = orjson.dumps(merged_ids)
    schema = schema.with_metadata(metadata)

    rows = 0

    def write(out: BinaryIO) -> None:
        nonlocal rows
        with pq.ParquetWriter(out, schema, **PARQUET_OPTIONS) as writer:
            for source in sources:
                with source.parquet() as parquet:
                    for index in range(parquet.num_row_groups):
                        group = parquet.read_row_group(index)
                        writer.write_table(group)
                        rows += group.num_rows

    final.replace(write)
    _remove(stale + new_parts)
    return rows


def read_output(path: Path) -> pa.Table:
    """Read an output, a single file or a directory of parts, as one table."""
    path = Path(path)
    if path.is_dir():
        return ds.dataset(path, format="parquet").to_table()
    return pq.read_table(path)


def _write_table(final: Path, table: pa.Table) -> None:
    write_atomically(final, lambda out: pq.write_table(table, out, **PARQUET_OPTIONS))


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _part_index(path: Path) -> int:
    match = PART_NAME.fullmatch(path.name)
    assert match is not None
    return int(match.group(1))


def part_id(file: StoredFile) -> str | None:
    raw = (file.schema().metadata or {}).get(META_PART_ID)
    return None if raw is None else bytes(raw).decode()


def _merged_part_ids(file: StoredFile) -> list[str]:
    raw = (file.schema().metadata or {}).get(META_PARTS)
    if raw is None:
        return []
    ids = orjson.loads(raw)
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _check_schema(file: StoredFile, expected: pa.Schema) -> None:
    """Refuse to mix vectors of another model, dimension or key type in one output."""
    found = file.schema()
    model = (found.metadata or {}).get(META_MODEL)
    if found.equals(expected, check_metadata=False) and model in (
        None,
        expected.metadata[META_MODEL],
    ):
        return
    raise ConfigError(
        f"model: {file} holds {_describe(found)}, but this output is {_describe(expected)}"
    )


def _describe(schema: pa.Schema) -> str:
    model = bytes((schema.metadata or {}).get(META_MODEL, b"?")).decode()
    types = ", ".join(f"{field.name} {field.type}" for field in schema)
    return f"model {model!r} ({types})"
