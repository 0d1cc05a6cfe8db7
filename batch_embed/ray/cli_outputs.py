"""The outputs of ``batch-embed run --engine ray``: one subdirectory per run, and what the
earlier runs already hold.

OUT (``--output``) and ERR (``--errors``, by default ``OUT.errors`` beside it) are local
directories or object-storage prefixes::

    OUT/run-<UTC time>-<random>/<write uuid>_<task>-<n>.parquet   id, embedding, text_sha256
    ERR/run-<UTC time>-<random>/part-<digest>.parquet              id, text_sha256,
                                                                   error_kind, error

The rules that make every input row end as exactly one vector row or one error row:

1. A run writes only into its own new ``run-...`` subdirectory, never into a file of
   another run. Ray Data names the vector files after the write's own uuid and the task,
   so a retried task replaces its own file; an error file is named after a digest of its
   rows, so a retried batch replaces it too.
2. Before a run, every Parquet file under OUT is opened. One that cannot be read (no
   footer: a write killed midway) is removed; the ``(id, text_sha256)`` pairs of the others
   are what is already embedded, and input rows with the same pair are not submitted again.
   A re-run after a finished run pays nothing; after a killed one, only the rows that no
   finished file holds.
3. One vector row per id: when an id is in the output from more than one run (its text
   changed), the latest run's rows win and the earlier rows are removed from their files
   (a file rewritten without them: a hidden temporary file renamed over it on local disk,
   one replacing put in object storage). This is done before and after every run, so a
   run killed between its write and this step is repaired by the next one.
4. Errors: an earlier error row of the same id and text whose cause is the content (bad
   input, rejected, failed, bad output, lost) is kept without a new submit, unless
   ``--retry-failed``; a passing one (retries exhausted, aborted) is tried again. The
   rows flow through the run and are written again into its ERR subdirectory, and a run
   that completes removes the earlier runs' ERR subdirectories. Reading ERR keeps the
   latest run's row of each ``(id, text_sha256)``, so a run killed before that removal
   counts no row twice.

5. A text the output holds under another id is not paid for again: the id pass lists the
   rows to copy (:mod:`~batch_embed.ray.duplicates`), the stream drops them, and after the
   run :func:`write_copies` writes them into the run's subdirectory with the vector an
   earlier run's file holds for that text (``copies-<n>.parquet``, each file written whole:
   a hidden temporary renamed on local disk, one put in object storage).

The driver holds the ``(id, text_sha256)`` pairs of the output (about 100 bytes a row);
every block of input is checked against them with ``pyarrow.compute.is_in``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from ..errors import ConfigError, InputError
from ..records import ErrorKind
from ..storage import for_writing, is_uri, remote
from .cli_inputs import BAD, BAD_KIND, ID, TEXT, TEXT_HASH
from .columns import EMBEDDING, ERROR, ERROR_KIND

RUN_PREFIX = "run-"
KEY_SEP = "\x1f"
READ_THREADS = 16
CONTENT_KINDS = frozenset(
    kind.value
    for kind in (
        ErrorKind.BAD_INPUT,
        ErrorKind.TOO_LONG,
        ErrorKind.DUPLICATE_ID,
        ErrorKind.REJECTED,
        ErrorKind.FAILED,
        ErrorKind.BAD_OUTPUT,
        ErrorKind.LOST,
    )
)
"""Error kinds that a new submit of the same text would meet again (kept unless
``--retry-failed``)."""
VECTOR_COLUMNS = (ID, EMBEDDING, TEXT_HASH)
ERROR_COLUMNS = (ID, TEXT_HASH, ERROR_KIND, ERROR)
FILE_ENDINGS = (".parquet", ".jsonl", ".ndjson", ".json")
"""Names that say one file, which this engine does not write (the local engine does)."""
_RUN = "run"
_FILE = "file"


@dataclass(frozen=True, slots=True)
class Store:
    """A directory or prefix: its file system, the path inside it, the name as given."""

    fs: pafs.FileSystem
    root: str
    name: str

    @classmethod
    def at(cls, target: Path | str, flag: str = "--output") -> Store:
        """The store of ``--output`` or ``--errors`` (ConfigError: a file, an unusable URI)."""
        if str(target).endswith(FILE_ENDINGS) and not Path(target).is_dir():
            raise ConfigError(
                f"{flag} {target}: --engine ray writes a directory (or an object-storage "
                "prefix) of Parquet files, not one file; name a directory"
            )
        if isinstance(target, str) and is_uri(target):
            try:
                fs, path = remote(target)
            except InputError as err:
                raise ConfigError(f"{flag} {target}: {err.reason}") from None
            return cls(for_writing(fs), path.rstrip("/"), target.rstrip("/"))
        local = Path(target)
        if local.exists() and not local.is_dir():
            raise ConfigError(f"{flag} {local}: exists and is not a directory")
        return cls(pafs.LocalFileSystem(), str(local.resolve()), str(target))

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def shown(self, *parts: str) -> str:
        return "/".join((self.name, *parts))


def errors_beside(output: Path | str) -> Path | str:
    """The default errors output: ``OUT.errors`` beside OUT."""
    if isinstance(output, str):
        return output.rstrip("/") + ".errors"
    return output.with_name(output.name + ".errors")


def new_run(clock: Callable[[], float] = time.time) -> str:
    """A run's subdirectory name; names sort in the order the runs started."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{RUN_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}"


def keys_of(ids: pa.Array | pa.ChunkedArray, hashes: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``"<id>\\x1f<text_sha256>"`` per row (null where either is)."""
    joined = pc.binary_join_element_wise(pc.cast(ids, pa.string()), hashes, KEY_SEP)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


@dataclass(frozen=True, slots=True)
class Index:
    """What a store holds: one row per row of its readable files, with ``run`` and ``file``."""

    table: pa.Table
    removed: tuple[str, ...]
    """The unreadable files found and removed (shown as the user names the store)."""


def read_index(store: Store, columns: Sequence[str]) -> Index:
    """Open every Parquet file of ``store``; remove the unreadable ones (rule 2)."""
    files = _parquet_files(store)

    def read(path: str) -> pa.Table | None:
        try:
            return pq.read_table(path, columns=list(columns), filesystem=store.fs)
        except (pa.ArrowException, OSError, ValueError):
            return None

    with ThreadPoolExecutor(READ_THREADS) as pool:
        tables = list(pool.map(read, files))
    parts, removed = [], []
    for path, table in zip(files, tables, strict=True):
        if table is None:
            store.fs.delete_file(path)
            removed.append(store.shown(path[len(store.root) + 1 :]))
            continue
        run = path[len(store.root) + 1 :].split("/")[0]
        table = table.append_column(_RUN, pa.array([run] * table.num_rows, pa.string()))
        parts.append(table.append_column(_FILE, pa.array([path] * table.num_rows, pa.string())))
    if not parts:
        return Index(_empty(columns), tuple(removed))
    return Index(pa.concat_tables(parts, promote_options="permissive"), tuple(removed))


def files_of(index: Index) -> list[str]:
    """The files the index's rows are in (paths inside the store's file system)."""
    return sorted(pc.unique(index.table[_FILE]).to_pylist())


def _empty(columns: Sequence[str]) -> pa.Table:
    types = {ID: pa.string(), EMBEDDING: pa.null()}
    fields = [pa.field(c, types.get(c, pa.string())) for c in (*columns, _RUN, _FILE)]
    return pa.schema(fields).empty_table()


def _parquet_files(store: Store) -> list[str]:
    """The visible ``.parquet`` files under ``store`` (hidden temporaries are removed)."""
    selector = pafs.FileSelector(store.root, recursive=True, allow_not_found=True)
    found = []
    for info in store.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(store.root) + 1 :]
        if rel.rsplit("/", 1)[-1].startswith(".") and rel.endswith(".tmp"):
            store.fs.delete_file(info.path)  # a rewrite killed midway (rule 3)
            continue
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        if rel.endswith(".parquet"):
            found.append(info.path)
    return sorted(found)


def prune_superseded(store: Store, index: Index) -> tuple[Index, int]:
    """Remove the rows of an id that a later run wrote again (rule 3); the index left."""
    table = index.table
    if table.num_rows == 0:
        return index, 0
    latest = table.group_by(ID).aggregate([(_RUN, "max")])
    joined = table.join(latest, keys=ID)
    stale = joined.filter(pc.not_equal(joined[_RUN], joined[f"{_RUN}_max"]))
    if stale.num_rows == 0:
        return index, 0
    for path in pc.unique(stale[_FILE]).to_pylist():
        ids = stale.filter(pc.equal(stale[_FILE], path))[ID]
        _rewrite_without(store, path, ids)
    stale_keys = pc.binary_join_element_wise(pc.cast(stale[ID], pa.string()), stale[_FILE], "/")
    all_keys = pc.binary_join_element_wise(pc.cast(table[ID], pa.string()), table[_FILE], "/")
    kept = table.filter(pc.invert(pc.is_in(all_keys, value_set=stale_keys.combine_chunks())))
    return Index(kept, index.removed), stale.num_rows


def _rewrite_without(store: Store, path: str, ids: pa.ChunkedArray) -> None:
    table = pq.read_table(path, filesystem=store.fs)
    left = table.filter(pc.invert(pc.is_in(table[ID], value_set=ids.combine_chunks())))
    if left.num_rows == 0:
        store.fs.delete_file(path)
        return
    _put_whole(store, path, left)


def _put_whole(store: Store, path: str, table: pa.Table) -> None:
    """Write ``path`` so that no reader sees it half-written: a put replaces an object
    whole; on local disk, a hidden temporary (removed by the next run if one is killed)
    renamed over it."""
    if not store.local:
        pq.write_table(table, path, filesystem=store.fs)
        return
    folder, _, name = path.rpartition("/")
    temporary = f"{folder}/.{name}.tmp"
    pq.write_table(table, temporary, filesystem=store.fs)
    store.fs.move(temporary, path)


def latest_errors(index: Index, done: pa.Array, *, retry_failed: bool) -> pa.Table:
    """The earlier error rows to keep (rule 4): the latest of each key, not embedded since,
    of a content kind (none with ``retry_failed``)."""
    table = index.table
    if table.num_rows == 0 or retry_failed:
        return _empty(ERROR_COLUMNS).drop_columns([_RUN, _FILE])
    keys = keys_of(table[ID], table[TEXT_HASH])
    table = table.append_column("key", keys)
    latest = table.group_by("key").aggregate([(_RUN, "max")])
    table = table.join(latest, keys="key")
    table = table.filter(pc.equal(table[_RUN], table[f"{_RUN}_max"]))
    table = table.filter(pc.is_in(table[ERROR_KIND], value_set=pa.array(sorted(CONTENT_KINDS))))
    table = table.filter(pc.invert(pc.is_in(table["key"], value_set=done)))
    # one row per key: the same key twice in the latest run (a repeated input row) counts once
    first = table.group_by("key").aggregate([(ERROR_KIND, "min"), (ERROR, "min")])
    return first.rename_columns(["key", ERROR_KIND, ERROR])


@dataclass(frozen=True, slots=True)
class Known:
    """What the filter and split steps need of the earlier runs (put in the object store)."""

    done: pa.Array
    """Keys already embedded."""
    kept: pa.Table
    """``key``, ``error_kind``, ``error`` of the earlier errors kept."""
    held: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    """The distinct text hashes the output holds (a row with one of them is copied)."""


def to_copy(batch: pa.Table, known: Known) -> pa.Array:
    """Rows whose text the output holds but not under their id: copied (rule 5)."""
    held = pc.is_in(batch[TEXT_HASH], value_set=known.held)
    done = pc.is_in(keys_of(batch[ID], batch[TEXT_HASH]), value_set=known.done)
    return pc.fill_null(pc.and_(held, pc.invert(done)), False)


def pending(batch: pa.Table, *, known: ray.ObjectRef[Known] | Known) -> pa.Table:
    """Drop the rows already embedded and those copied after the run (rule 5); blank the
    text of rows whose error is kept."""
    k = ray.get(known) if isinstance(known, ray.ObjectRef) else known
    keys = keys_of(batch[ID], batch[TEXT_HASH])
    if len(k.done):
        batch = batch.filter(pc.invert(pc.fill_null(pc.is_in(keys, value_set=k.done), False)))
        keys = keys_of(batch[ID], batch[TEXT_HASH])
    if len(k.held):
        batch = batch.filter(pc.invert(to_copy(batch, k)))
        keys = keys_of(batch[ID], batch[TEXT_HASH])
    if k.kept.num_rows:
        kept = pc.fill_null(pc.is_in(keys, value_set=k.kept["key"].combine_chunks()), False)
        texts = pc.if_else(kept, pa.scalar(None, pa.string()), batch[TEXT])
        batch = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, texts)
    return batch


def split(
    batch: pa.Table, *, known: ray.ObjectRef[Known] | Known, errors: Store, run: str
) -> pa.Table:
    """Write the batch's error rows to ERR/run/ (one file per batch); return its vectors.

    Rows of kind ``capped`` (the submit cap kept their text back) go to neither."""
    k = ray.get(known) if isinstance(known, ray.ObjectRef) else known
    kinds = batch[ERROR_KIND]
    messages = batch[ERROR]
    bad = pc.is_valid(batch[BAD])
    kinds = pc.if_else(bad, batch[BAD_KIND], kinds)
    messages = pc.if_else(bad, batch[BAD], messages)
    if k.kept.num_rows:
        keys = keys_of(batch[ID], batch[TEXT_HASH])
        at = pc.index_in(keys, value_set=k.kept["key"].combine_chunks())
        was = pc.is_valid(at)
        kinds = pc.if_else(was, pc.take(k.kept[ERROR_KIND], pc.fill_null(at, 0)), kinds)
        messages = pc.if_else(was, pc.take(k.kept[ERROR], pc.fill_null(at, 0)), messages)
    failed = pc.is_valid(kinds)
    # A row the submit cap kept back is neither: a later run embeds it.
    error_rows = pc.and_kleene(failed, pc.not_equal(kinds, pa.scalar(ErrorKind.CAPPED.value)))
    if pc.any(error_rows).as_py():
        rows = pa.table(
            {
                ID: batch[ID],
                TEXT_HASH: batch[TEXT_HASH],
                ERROR_KIND: kinds,
                ERROR: messages,
            }
        ).filter(error_rows)
        _write_errors(errors, run, rows)
    return batch.filter(pc.invert(failed)).select(list(VECTOR_COLUMNS))


def _write_errors(errors: Store, run: str, rows: pa.Table) -> None:
    """One file named after its rows: a batch retried by Ray replaces its own file."""
    digest = hashlib.sha256()
    for key in keys_of(rows[ID], pc.fill_null(rows[TEXT_HASH], "")).to_pylist():
        digest.update(f"{key}\n".encode())
    folder = errors.path(run)
    errors.fs.create_dir(folder, recursive=True)
    name = f"part-{digest.hexdigest()[:24]}.parquet"
    if not errors.local:
        pq.write_table(rows, f"{folder}/{name}", filesystem=errors.fs)
        return
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(rows, temporary, filesystem=errors.fs)
    errors.fs.move(temporary, f"{folder}/{name}")


def remove_earlier_runs(store: Store, run: str) -> None:
    """Remove every ``run-...`` subdirectory of ``store`` but ``run`` (rule 4)."""
    selector = pafs.FileSelector(store.root, recursive=False, allow_not_found=True)
    for info in store.fs.get_file_info(selector):
        name = info.path.rsplit("/", 1)[-1]
        if info.type == pafs.FileType.Directory and name.startswith(RUN_PREFIX) and name != run:
            store.fs.delete_dir(info.path)


def rows_in(store: Store, run: str) -> int:
    """The rows of one run's files (from their footers)."""
    total = 0
    selector = pafs.FileSelector(store.path(run), recursive=True, allow_not_found=True)
    for info in store.fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            name = info.path.rsplit("/", 1)[-1]
            if not name.startswith((".", "_")):
                total += pq.ParquetFile(store.fs.open_input_file(info.path)).metadata.num_rows
    return total


COPY_FILE_ROWS = 4096
"""Rows per ``copies-<n>.parquet`` file."""


def write_copies(store: Store, run: str, copies: pa.Table, sources: Sequence[str]) -> int:
    """Write ``copies`` (``id``, ``text_sha256``) into ``run`` with the vectors the files
    ``sources`` (earlier runs' files) hold for their texts; the rows written (rule 5)."""
    if copies.num_rows == 0 or not sources:
        return 0
    wanted = pc.unique(copies[TEXT_HASH].combine_chunks())
    scan = pads.dataset(list(sources), format="parquet", filesystem=store.fs).scanner(
        columns=[TEXT_HASH, EMBEDDING], filter=pads.field(TEXT_HASH).isin(wanted)
    )
    written, found, pieces, buffered = 0, pa.array([], pa.string()), [], 0
    for batch in scan.to_batches():
        vectors = pa.Table.from_batches([batch])
        fresh = pc.invert(pc.is_in(vectors[TEXT_HASH], value_set=found))
        vectors = vectors.filter(fresh)
        hashes = vectors[TEXT_HASH].combine_chunks()
        first = pc.equal(pc.index_in(hashes, value_set=hashes), pa.array(range(len(hashes))))
        vectors = vectors.filter(first)  # one vector per text (every copy of it is the same)
        if vectors.num_rows == 0:
            continue
        hashes = vectors[TEXT_HASH].combine_chunks()
        found = pa.concat_arrays([found, hashes])
        rows = copies.filter(pc.is_in(copies[TEXT_HASH], value_set=hashes))
        at = pc.index_in(rows[TEXT_HASH], value_set=hashes)
        embedding = pc.take(vectors[EMBEDDING], at)
        pieces.append(pa.table({ID: rows[ID], EMBEDDING: embedding, TEXT_HASH: rows[TEXT_HASH]}))
        buffered += rows.num_rows
        if buffered >= COPY_FILE_ROWS:
            written += _write_whole(store, run, written, pa.concat_tables(pieces))
            pieces, buffered = [], 0
    if pieces:
        written += _write_whole(store, run, written, pa.concat_tables(pieces))
    return written


def _write_whole(store: Store, run: str, start: int, table: pa.Table) -> int:
    """One ``copies-<start>.parquet`` file of ``run``; its rows."""
    store.fs.create_dir(store.path(run), recursive=True)
    _put_whole(store, store.path(run, f"copies-{start:010d}.parquet"), table)
    return int(table.num_rows)
