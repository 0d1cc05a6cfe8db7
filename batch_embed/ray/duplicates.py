"""Ids used twice in the input of a ``--engine ray`` run: the first in input order wins.

The local engine sees its rows in order; a Ray read is parallel, so the driver settles ids
first, in one pass over the ``id``, ``text_sha256`` and ``seq`` columns of the input
(:func:`find_duplicates`, before any paid call; 24 bytes a row on the driver, for the
pass only). Within an id, in ``seq`` order (file, then line):

- the first row wins and is embedded;
- a later row with the same text is a harmless repeat: dropped, as the local engine skips it;
- a later row with another text is a ``duplicate_id`` error naming where the id was first
  used (:func:`batch_embed.fields.duplicate_id_message`, as the local engine says it).

Rows that cannot be embedded anyway (``bad`` set: no hash) take no part. Then
:func:`mark_duplicates`, in the read stream, applies the verdicts by ``seq``. The same pass
lists the rows whose text the output already holds under another id (rule 5 of
:mod:`~batch_embed.ray.cli_outputs`): they are copied, not paid for again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import ray

from ..fields import duplicate_id_message
from ..inputs import InputFile
from ..records import ErrorKind
from .cli_inputs import BAD, BAD_KIND, ID, SEQ, TEXT, TEXT_HASH, where_of
from .cli_outputs import Known, to_copy

COPY_HASH = "copy_hash"

HASH_DIGITS = 15
"""Texts of one id are told apart by the first 15 hex digits of their SHA-256 (60 bits, an
int64), so the driver holds 24 bytes a row: id, hash prefix, seq."""


@dataclass(frozen=True, slots=True)
class Duplicates:
    """The verdicts of the id pass, by ``seq``."""

    repeats: pa.Array
    """Rows repeating their id's first row, text and all: dropped."""
    conflicts: pa.Array
    """Rows whose id an earlier row used with another text: ``duplicate_id`` errors."""
    messages: pa.Array
    """Why, per conflict."""
    rows: int
    """Rows the pass looked at (the embeddable ones)."""

    def __len__(self) -> int:
        return len(self.repeats) + len(self.conflicts)


def find_duplicates(
    rows: ray.data.Dataset,
    files: Sequence[InputFile],
    id_field: str | None,
    known: ray.ObjectRef[Known] | Known | None = None,
) -> tuple[Duplicates, pa.Table]:
    """The id pass over ``rows`` (the input as :func:`~.cli_inputs.read_inputs` gives it):
    its verdicts, and (with ``known``) the ``id``, ``text_sha256`` of the rows whose text
    the output holds under another id, to copy from it after the run, not paid for."""
    parts = list(
        rows.map_batches(
            functools.partial(_id_columns, known=known), batch_format="pyarrow"
        ).iter_batches(batch_format="pyarrow", batch_size=None)
    )
    table = pa.concat_tables(parts) if parts else None
    parts.clear()
    found = settle(table, files, id_field)
    if table is None:
        return found, pa.table({ID: [], TEXT_HASH: []})
    wanted = table.filter(pc.is_valid(table[COPY_HASH]))
    dropped = pa.concat_arrays([found.repeats, found.conflicts])
    wanted = wanted.filter(pc.invert(pc.is_in(wanted[SEQ], value_set=dropped)))
    return found, pa.table({ID: wanted[ID], TEXT_HASH: wanted[COPY_HASH]})


def _id_columns(batch: pa.Table, *, known: ray.ObjectRef[Known] | Known | None) -> pa.Table:
    """In a worker: the embeddable rows' ``id``, hash prefix (int64) and ``seq``, and the
    whole hash of those to copy (null for the others)."""
    batch = batch.filter(pc.is_valid(batch[TEXT_HASH]))
    prefix = [int(h[:HASH_DIGITS], 16) for h in batch[TEXT_HASH].to_pylist()]
    k = ray.get(known) if isinstance(known, ray.ObjectRef) else known
    copy = pa.nulls(batch.num_rows, pa.string())
    if k is not None:
        copy = pc.if_else(to_copy(batch, k), batch[TEXT_HASH], copy)
    return pa.table(
        {
            ID: batch[ID],
            TEXT_HASH: pa.array(prefix, pa.int64()),
            SEQ: batch[SEQ],
            COPY_HASH: copy,
        }
    )


def settle(table: pa.Table | None, files: Sequence[InputFile], id_field: str | None) -> Duplicates:
    """The verdicts for rows of ``id``, ``text_sha256`` (the text's hash or any prefix of
    it, string or integer) and ``seq``."""
    empty = pa.array([], pa.int64())
    if table is None or table.num_rows == 0:
        return Duplicates(empty, empty, pa.array([], pa.string()), 0)
    order = pc.sort_indices(table, sort_keys=[(ID, "ascending"), (SEQ, "ascending")])
    ids, hashes, seqs = (pc.take(table[c], order).combine_chunks() for c in (ID, TEXT_HASH, SEQ))
    count = table.num_rows
    del table, order
    earlier_ids = pa.concat_arrays([pa.nulls(1, ids.type), ids.slice(0, len(ids) - 1)])
    first = pc.fill_null(pc.not_equal(ids, earlier_ids), True)
    winner_hash = pc.fill_null_forward(pc.if_else(first, hashes, pa.scalar(None, hashes.type)))
    winner_seq = pc.fill_null_forward(pc.if_else(first, seqs, pa.scalar(None, pa.int64())))
    later = pc.invert(first)
    same = pc.equal(hashes, winner_hash)
    repeats = pc.filter(seqs, pc.and_(later, same))
    conflict = pc.and_(later, pc.invert(same))
    conflicts = pc.filter(seqs, conflict)
    messages = [
        duplicate_id_message(key, where_of(files, seq), id_field, where_of(files, earlier))
        for key, seq, earlier in zip(
            pc.filter(ids, conflict).to_pylist(),
            conflicts.to_pylist(),
            pc.filter(winner_seq, conflict).to_pylist(),
            strict=True,
        )
    ]
    return Duplicates(repeats, conflicts, pa.array(messages, pa.string()), count)


def mark_duplicates(
    batch: pa.Table, *, duplicates: ray.ObjectRef[Duplicates] | Duplicates
) -> pa.Table:
    """Drop the batch's repeats, make its conflicts ``duplicate_id`` rows, drop ``seq``."""
    d = ray.get(duplicates) if isinstance(duplicates, ray.ObjectRef) else duplicates
    seqs = batch[SEQ]
    if len(d.repeats):
        batch = batch.filter(pc.invert(pc.is_in(seqs, value_set=d.repeats)))
        seqs = batch[SEQ]
    if len(d.conflicts):
        at = pc.index_in(seqs, value_set=d.conflicts)
        hit = pc.is_valid(at)
        message = pc.take(d.messages, pc.fill_null(at, 0))
        null = pa.scalar(None, pa.string())
        columns = {
            TEXT: pc.if_else(hit, null, batch[TEXT]),
            TEXT_HASH: pc.if_else(hit, null, batch[TEXT_HASH]),
            BAD: pc.if_else(hit, message, batch[BAD]),
            BAD_KIND: pc.if_else(hit, pa.scalar(ErrorKind.DUPLICATE_ID.value), batch[BAD_KIND]),
        }
        for name, column in columns.items():
            batch = batch.set_column(batch.schema.get_field_index(name), name, column)
    return batch.drop_columns([SEQ])
