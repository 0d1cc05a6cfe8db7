"""The inputs of ``batch-embed run --engine ray``: resolved files -> one Ray dataset of rows.

The files are found as the local engine finds them (:func:`batch_embed.inputs.resolve_inputs`,
object storage through :mod:`batch_embed.storage`) and checked as it checks them
(:meth:`batch_embed.reader.Reader.preflight` on the first ``PREFLIGHT_FILES``: a missing
text or id field is an InputError naming the file and the field, before any paid call).

Then the cluster reads them: one read task per file (:func:`read_files`) runs the local
engine's own :class:`~batch_embed.reader.Reader` on it, so a row is judged on Ray exactly
as on one machine (a line that is not JSON, a text of the wrong type, an id of the wrong
type, a text over the model's token limit, ``--truncate``), with its line or row number
in the message. Each batch becomes the columns the run needs (:func:`rows_table`): ``id``
(int64 or string, the run's one key type), ``text``, ``text_sha256``, ``bad`` and
``bad_kind`` (why the row cannot be embedded and its error kind, null when it can; its
text and hash are then null, so it is never submitted nor matched with the output) and
``seq`` (the row's place in the input: file index and line or row number, see
:func:`seq_of`; :mod:`~batch_embed.ray.duplicates` orders ids by it).

A file the preflight did not see is checked by its read task the same way: one that cannot
be read, lacks a field or breaks midway (a truncated gzip stream) raises InputError, which
the driver meets in its id pass, before any paid call.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa
import ray

from ..fields import KeyType
from ..inputs import InputFile
from ..reader import Reader, ReaderConfig
from ..records import ErrorRecord, Row

PREFLIGHT_FILES = 16
"""How many input files are checked before the run (footers, first lines): the rest are
read by the cluster only."""

ID, TEXT, TEXT_HASH, BAD, BAD_KIND, SEQ = "id", "text", "text_sha256", "bad", "bad_kind", "seq"
_KEY_TYPES: dict[KeyType, pa.DataType] = {"int": pa.int64(), "str": pa.string()}


@dataclass(frozen=True, slots=True)
class Fields:
    """How every file of the run is read, settled by :func:`preflight`."""

    config: ReaderConfig
    """Its ``id_field`` is the run's (None: keys derived from ``<file>:<line>``)."""
    key_type: KeyType


def preflight(files: Sequence[InputFile], config: ReaderConfig) -> Fields:
    """Check the first files as the local engine does; settle the id field and key type.

    Raises InputError (a missing field, an unreadable file, ids of two types).
    """
    reader = Reader(files[:PREFLIGHT_FILES], config)
    reader.preflight()
    return Fields(replace(config, id_field=reader.id_field), reader.key_type)


def read_inputs(files: Sequence[InputFile], fields: Fields) -> ray.data.Dataset:
    """One dataset of every input row, as :func:`rows_table` shapes them (one block per file,
    read lazily: the dataset can be iterated more than once)."""
    listed = ray.put(list(files))
    return (
        ray.data.from_items(
            [{"file": i} for i in range(len(files))], override_num_blocks=len(files)
        )
        .map_batches(
            functools.partial(read_files, files=listed, fields=fields),
            batch_size=1,
            batch_format="pyarrow",
        )
        # A read task's output is one block per 128 MiB: cut it so that every actor of
        # the embedding pool gets work from a single large file.
        .repartition(target_num_rows_per_block=fields.config.batch_size)
    )


SEQ_FILE_SHIFT = 40
"""``seq`` = file index << 40 | line (JSONL, 1-based) or row (Parquet, 0-based)."""


def seq_of(file_index: int, location: str) -> int:
    """A row's ``seq`` from its file's index and its ``"line N"`` / ``"row N"`` location."""
    return (file_index << SEQ_FILE_SHIFT) | int(location.rpartition(" ")[2])


def where_of(files: Sequence[InputFile], seq: int) -> str:
    """``"<file>, line N"`` (or ``row N``) of a row's ``seq``, as the local engine says it."""
    file = files[seq >> SEQ_FILE_SHIFT]
    word = "line" if file.format == "jsonl" else "row"
    return f"{file.source}, {word} {seq & ((1 << SEQ_FILE_SHIFT) - 1)}"


def read_files(
    batch: pa.Table,
    *,
    files: ray.ObjectRef[list[InputFile]] | list[InputFile],
    fields: Fields,
) -> Iterator[pa.Table]:
    """The rows of the files whose indexes ``batch`` lists, a Reader batch at a time."""
    listed = ray.get(files) if isinstance(files, ray.ObjectRef) else files
    for index in batch["file"].to_pylist():
        reader = Reader([listed[index]], fields.config, key_type=fields.key_type)
        reader.preflight()  # a file past the driver's preflight is checked here
        for items in reader.batches():
            yield rows_table(items, index, fields.key_type)


def rows_table(items: Sequence[Row | ErrorRecord], file_index: int, key_type: KeyType) -> pa.Table:
    """The Reader's rows and error records of one file -> the dataset's columns."""
    wanted = int if key_type == "int" else str
    ids: list[object] = []
    texts: list[str | None] = []
    hashes: list[str | None] = []
    bad: list[str | None] = []
    kinds: list[str | None] = []
    seqs: list[int] = []
    for item in items:
        seqs.append(seq_of(file_index, item.location))
        if isinstance(item, Row):
            ids.append(item.key)
            texts.append(item.text)
            hashes.append(item.text_hash)
            bad.append(None)
            kinds.append(None)
        else:
            # a key of the wrong type (or a derived one) cannot go in the id column
            ids.append(item.key if type(item.key) is wanted else None)
            texts.append(None)
            hashes.append(None)
            bad.append(item.message)
            kinds.append(item.kind.value)
    return pa.table(
        {
            ID: pa.array(ids, _KEY_TYPES[key_type]),
            TEXT: pa.array(texts, pa.string()),
            TEXT_HASH: pa.array(hashes, pa.string()),
            BAD: pa.array(bad, pa.string()),
            BAD_KIND: pa.array(kinds, pa.string()),
            SEQ: pa.array(seqs, pa.int64()),
        }
    )
