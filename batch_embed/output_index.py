"""What an output already holds, and keeping it true: its files, its settings, stale rows.

A re-run must agree with the output it extends (model, dimension, key type) and must leave
no row in it whose text has since changed. Everything here streams the output's files row
group by row group and rewrites a file only atomically.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .journal import Journal
from .layout import OutputLayout
from .records import RowKey
from .writer import committed_parts, drop_stale_rows


def output_files(layout: OutputLayout) -> list[Path]:
    """The output's Parquet files: the merged single file first (if any), then the parts."""
    files = committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []
    if layout.single_file and layout.output.exists():
        files.insert(0, layout.output)
    return files


def drop_superseded(layout: OutputLayout, superseded: dict[RowKey, str]) -> None:
    """Remove from the output the old vectors of rows whose text changed since they were written.

    A row is dropped when its id is superseded and its ``text_sha256`` is not the id's
    current hash. Files are streamed row group by row group and rewritten atomically, only
    when they hold such a row, so a crash leaves every file whole (and the journal keeps the
    superseded keys until this has finished).
    """
    for path in output_files(layout):
        drop_stale_rows(path, superseded)


def check_meta(journal: Journal, layout: OutputLayout, model: str, dim: int, key_type: str) -> None:
    """Refuse to mix runs with different models or key types in one output."""
    wanted = {"model": model, "dim": str(dim), "key_type": key_type}
    for name, value in wanted.items():
        found = journal.meta(name)
        if found is not None and found != value:
            raise ConfigError(
                f"output {layout.output}: an earlier run wrote {name}={found}, this run has "
                f"{name}={value}; use another --output, or --fresh to start over"
            )
    journal.set_meta(wanted)


def remove_outputs(layout: OutputLayout) -> None:
    """With --fresh: remove the parts and the output file of earlier runs."""
    for part in committed_parts(layout.parts_dir) if layout.parts_dir.exists() else []:
        part.unlink()
    if layout.single_file:
        layout.output.unlink(missing_ok=True)
