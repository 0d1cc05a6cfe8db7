"""What an output already holds, and keeping the journal and the output true to each other.

The output is the record: every committed row is in its files with its ``id`` and
``text_sha256``, and its footer names the model and dimension. So a re-run needs no journal
to know what is paid for. When the journal's count of committed rows disagrees with the
rows the output's footers hold (the journal was deleted, or the output was copied from
another machine, or replaced), the journal's committed rows are re-read from the output:
ids and hashes only, one row group at a time, never the vectors. In-flight jobs and failed
texts stay as the journal has them.

A re-run must agree with the output it extends (model, dimension, key type), and must
leave no row whose text has since changed, nor (with ``--prune``) a row whose key left the
input. Files are rewritten only atomically; the journal keeps the keys to drop until every
file is rewritten, so a crash in between is finished by the next run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError
from .journal import Journal
from .layout import OutputLayout
from .output_rewrite import drop_stale_rows
from .output_store import StoredFile
from .records import RowKey
from .writer import META_DIM, META_MODEL, committed_parts, part_id

_KEY_TYPES = {"int64": "int", "string": "str", "large_string": "str"}


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """What an output's first file says of itself."""

    path: StoredFile
    model: str | None
    dim: str | None
    key_type: str | None


def output_files(layout: OutputLayout) -> list[StoredFile]:
    """The output's Parquet files: the merged single file first (if any), then the parts.

    For a directory in object storage, its published parts only (:func:`publish_staged`
    publishes what a killed run left staged, before anything reads the output).
    """
    if layout.published is not None:
        return layout.published.parts()
    parts = committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []
    files = [StoredFile.local(part) for part in parts]
    if layout.final is not None and layout.final.exists():
        files.insert(0, layout.final)
    return files


def publish_staged(layout: OutputLayout) -> int:
    """Publish the parts a killed run committed locally but never published; return them.

    A part killed after its upload but before its local copy was deleted is published
    already: its ``part_id`` is in a published part's footer, and it is only deleted.
    """
    if layout.published is None:
        return 0
    layout.published.sweep()
    if not layout.parts_dir.exists():
        return 0
    staged = committed_parts(layout.parts_dir)
    if not staged:
        return 0
    published = {part_id(file) for file in layout.published.parts()}
    for part in staged:
        if part_id(StoredFile.local(part)) in published:
            part.unlink()
        else:
            layout.published.publish(part)
    return len(staged)


def output_settings(layout: OutputLayout) -> OutputSettings | None:
    """The model, dimension and key type the output's first file records; None if empty."""
    files = output_files(layout)
    if not files:
        return None
    schema = _schema(files[0])
    meta = schema.metadata or {}
    id_type = str(schema.field("id").type) if "id" in schema.names else None
    return OutputSettings(
        files[0],
        bytes(meta[META_MODEL]).decode() if META_MODEL in meta else None,
        bytes(meta[META_DIM]).decode() if META_DIM in meta else None,
        _KEY_TYPES.get(id_type or ""),
    )


def check_meta(journal: Journal, layout: OutputLayout, model: str, dim: int, key_type: str) -> None:
    """Refuse to mix runs with different models, dimensions or key types in one output.

    Both records are asked: the journal's settings and the output's own footer, so that
    an output whose journal is gone is guarded as well.
    """
    wanted = {"model": model, "dim": str(dim), "key_type": key_type}
    settings = output_settings(layout)
    if settings is not None:
        found_in_output = {
            "model": settings.model,
            "dim": settings.dim,
            "key_type": settings.key_type,
        }
        for name, value in wanted.items():
            found = found_in_output[name]
            if found is not None and found != value:
                raise ConfigError(
                    f"output {settings.path} holds {name} {found!r}, this run has {name} "
                    f"{value!r}; use another --output, or --fresh to start over"
                )
    for name, value in wanted.items():
        found = journal.meta(name)
        if found is not None and found != value:
            raise ConfigError(
                f"output {layout.name}: an earlier run wrote {name}={found}, this run has "
                f"{name}={value}; use another --output, or --fresh to start over"
            )
    journal.set_meta(wanted)


def check_state_owner(journal: Journal, layout: OutputLayout) -> None:
    """Refuse a ``--state-dir`` whose journal belongs to another output; claim it if new."""
    here = layout.name if layout.output is None else str(layout.output.resolve())
    owner = journal.meta("output")
    if owner is not None and owner != here:
        raise ConfigError(
            f"--state-dir {layout.state_dir} holds the journal of the output {owner}, not of "
            f"{layout.name}; give each output its own --state-dir"
        )
    journal.set_meta({"output": here})


def output_rows(layout: OutputLayout) -> int:
    """The rows the output's files hold, from their footers alone."""
    return sum(_metadata(file).num_rows for file in output_files(layout))


def reconcile(journal: Journal, layout: OutputLayout) -> int | None:
    """Make the journal's committed rows the output's; return the rows re-read, or None.

    Nothing is read beyond the footers when the counts agree (the usual re-run).
    """
    in_output = output_rows(layout)
    if journal.committed_count() == in_output:
        return None
    journal.forget_committed()
    journal.import_committed(_entries(layout))
    return in_output


def _entries(layout: OutputLayout) -> Iterator[tuple[RowKey, str, str, str]]:
    """Every output row as ``(key, hash, file, "row N")``, one row group at a time."""
    for file in output_files(layout):
        row = 0
        with file.parquet() as parquet:
            for index in range(parquet.num_row_groups):
                group = parquet.read_row_group(index, columns=["id", "text_sha256"])
                ids = group.column("id").to_pylist()
                hashes = group.column("text_sha256").to_pylist()
                for offset, (key, digest) in enumerate(zip(ids, hashes, strict=True)):
                    yield key, digest, file.name, f"row {row + offset}"
                row += group.num_rows


def finish_drops(journal: Journal, layout: OutputLayout) -> None:
    """Remove the superseded and pruned rows from every output file, then from the journal.

    A superseded key keeps only its current hash's row; a pruned key keeps none.
    """
    drops = journal.superseded()
    if drops:
        journal.finish_drops(drop_rows(layout, drops))


def drop_rows(layout: OutputLayout, drops: Mapping[RowKey, str | None]) -> set[str]:
    """Rewrite the output files that hold rows to drop; return the hashes dropped.

    Touches files only, never the journal, so it may run in a worker thread.
    """
    dropped: set[str] = set()
    for file in output_files(layout):
        dropped |= drop_stale_rows(file, drops)
    return dropped


def remove_outputs(layout: OutputLayout) -> None:
    """With --fresh: remove the parts and the output file of earlier runs."""
    for part in committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []:
        part.unlink()
    if layout.published is not None:
        for file in layout.published.parts():
            file.delete()
    if layout.final is not None:
        layout.final.delete()


def _schema(file: StoredFile) -> pa.Schema:
    try:
        return file.schema()
    except (pa.ArrowException, OSError) as err:
        raise ConfigError(f"output file {file} cannot be read ({err})") from err


def _metadata(file: StoredFile) -> pq.FileMetaData:
    try:
        return file.metadata()
    except (pa.ArrowException, OSError) as err:
        raise ConfigError(f"output file {file} cannot be read ({err})") from err
