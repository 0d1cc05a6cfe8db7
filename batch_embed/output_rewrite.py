"""Rewriting an output file without some of its rows: changed texts' old vectors, pruned keys.

A file is scanned (ids and hashes only) one row group at a time, and rewritten atomically
(temporary name, fsync, rename) only when it holds a row to drop, so a crash leaves every
file whole: either as it was, or without its dropped rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .output_store import StoredFile
from .records import RowKey
from .writer import PARQUET_OPTIONS


def drop_stale_rows(file: StoredFile, current: Mapping[RowKey, str | None]) -> set[str]:
    """Remove rows whose id is in ``current`` with another ``text_sha256``; return their hashes.

    ``current`` maps a key to the hash its row must have (its text changed since its vector
    was written: the old vector must not stay beside the new one), or to None (the key is
    pruned: no row of it stays). The file is scanned (ids and hashes only) one row group at a
    time and rewritten atomically only when it holds such a row.
    """
    keys = pa.array(list(current))
    with file.parquet() as parquet:
        if not any(
            _stale_mask(parquet.read_row_group(i, columns=["id", "text_sha256"]), keys, current)
            is not None
            for i in range(parquet.num_row_groups)
        ):
            return set()
    return _rewrite_without_stale(file, keys, current)


def _stale_mask(
    group: pa.Table, keys: pa.Array, current: Mapping[RowKey, str | None]
) -> pa.Array | None:
    """A mask of the rows of ``group`` to keep, or None when all of them are kept."""
    candidates = pc.is_in(group.column("id"), value_set=keys.cast(group.schema.field("id").type))
    if not pc.any(candidates).as_py():
        return None
    ids = group.column("id").to_pylist()
    hashes = group.column("text_sha256").to_pylist()
    keep = [current.get(key, digest) == digest for key, digest in zip(ids, hashes, strict=True)]
    return None if all(keep) else pa.array(keep)


def _rewrite_without_stale(
    file: StoredFile, keys: pa.Array, current: Mapping[RowKey, str | None]
) -> set[str]:
    """Rewrite one output file without its stale rows (atomically, one row group at a time)."""
    dropped: set[str] = set()
    with file.parquet() as parquet:
        schema = parquet.schema_arrow

        def write(out: BinaryIO) -> None:
            with pq.ParquetWriter(out, schema, **PARQUET_OPTIONS) as writer:
                for index in range(parquet.num_row_groups):
                    group = parquet.read_row_group(index)
                    keep = _stale_mask(group, keys, current)
                    if keep is None:
                        writer.write_table(group)
                        continue
                    gone = group.filter(pc.invert(keep)).column("text_sha256")
                    dropped.update(gone.to_pylist())
                    writer.write_table(group.filter(keep))

        file.replace(write)
    return dropped
