"""The end-of-run copy: every still-PENDING row of this run gets its vector or its error.

Rows whose text was embedded before (by this run, an earlier one, or another key) are not
paid for again: their vector is read back from the output, one row group at a time and
only for the hashes wanted, and written under the row's own key. Rows whose text failed get
that text's error; rows the run never reached get the reason it stopped, or, when it
stopped at the submit cap, are left PENDING for the next run (counted as left, no error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .jobs import WaitingRow
from .journal import TextState
from .output_index import output_files
from .records import ErrorKind, RowKey

if TYPE_CHECKING:
    from .engine import Engine

COPY_CHUNK = 50_000
"""Pending rows resolved per pass of the end-of-run copy."""

Wanted = dict[str, list[tuple[RowKey, str, str]]]
"""text hash -> the (key, source, location) of the rows waiting for its vector."""


async def resolve_pending(engine: Engine) -> None:
    """Give every still-PENDING row of this run its vector (copied) or its error."""
    await engine.output.commit()
    pending = engine.journal.pending_rows()
    for start in range(0, len(pending), COPY_CHUNK):
        chunk = pending[start : start + COPY_CHUNK]
        wanted: Wanted = {}
        for key, digest, source, location in chunk:
            wanted.setdefault(digest, []).append((key, source, location))
        for digest in list(wanted):
            known = engine.journal.text(digest)
            if known is not None and known.state is TextState.DONE:
                continue
            rows = [WaitingRow(k, s, loc) for k, s, loc in wanted.pop(digest)]
            failure = engine.failed_here.get(digest)
            if failure is not None:
                engine.fail_rows(rows, ErrorKind(failure[0]), failure[1], failure[2], ())
            elif engine.budget.refused and not engine.halted:
                for row in rows:  # still PENDING in the journal: the next run embeds them
                    engine.stats.ledger(row.source).left += 1
            else:
                reason = engine.abort_reason or "run stopped before this row was embedded"
                engine.fail_rows(rows, ErrorKind.ABORTED, reason, None, ())
        if wanted:
            await copy_from_output(engine, wanted)
    await engine.output.commit()


async def copy_from_output(engine: Engine, wanted: Wanted) -> None:
    """Write rows whose text's vector is already in the output, reading it back once."""
    sources = output_files(engine.layout)
    needed = set(wanted)
    for file in sources:
        if not needed:
            break
        # One row group at a time: memory stays flat however large the output file.
        with file.parquet() as parquet:
            for index in range(parquet.num_row_groups):
                if not needed:
                    break
                hashes = parquet.read_row_group(index, columns=["text_sha256"]).column(
                    "text_sha256"
                )
                value_set = pa.array(sorted(needed), type=pa.string())
                mask = pc.is_in(hashes, value_set=value_set)
                if not pc.any(mask).as_py():
                    continue
                group = parquet.read_row_group(index, columns=["text_sha256", "embedding"])
                table = group.filter(mask)
                digests = table.column("text_sha256").to_pylist()
                flat = table.column("embedding").combine_chunks().flatten().to_numpy()
                vectors = flat.reshape(len(digests), -1).astype(np.float32, copy=False)
                for digest, vector in zip(digests, vectors, strict=True):
                    if digest not in needed:
                        continue
                    needed.discard(digest)
                    for key, source, _ in wanted[digest]:
                        await engine.output.add_row(key, source, digest, vector)
    for digest in needed:
        rows = [WaitingRow(k, s, loc) for k, s, loc in wanted[digest]]
        engine.fail_rows(
            rows,
            ErrorKind.ABORTED,
            "its text's vector is recorded as written but is missing from the "
            "output; run again with --fresh",
            None,
            (),
        )
