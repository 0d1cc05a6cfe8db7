"""The columns ``embed_dataset`` adds to each batch, and the split into vectors and errors.

Every input row comes out once, in its batch's order, with three more columns:
``embedding`` (``fixed_size_list<float32>[dim]``, null for an error row), ``error_kind``
(an :class:`~batch_embed.records.ErrorKind` value, null on success) and ``error`` (the
message, null on success). Input columns of those names are replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .texts import Outcome

EMBEDDING = "embedding"
ERROR_KIND = "error_kind"
ERROR = "error"
OUTPUT_COLUMNS = (EMBEDDING, ERROR_KIND, ERROR)


def embedding_type(dim: int) -> pa.DataType:
    """``fixed_size_list<float32>[dim]``."""
    return pa.list_(pa.float32(), dim)


def with_outcomes(batch: pa.Table, outcomes: Sequence[Outcome], dim: int) -> pa.Table:
    """``batch`` with the output columns of ``outcomes`` (one per row, in order)."""
    if len(outcomes) != batch.num_rows:
        raise ValueError(f"{len(outcomes)} outcomes for {batch.num_rows} rows")
    values = np.zeros((len(outcomes), dim), dtype=np.float32)
    missing = np.ones(len(outcomes), dtype=bool)
    for i, outcome in enumerate(outcomes):
        if outcome.vector is not None:
            values[i] = outcome.vector
            missing[i] = False
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1)), dim, mask=pa.array(missing)
    )
    kinds = pa.array(
        [o.error_kind.value if o.error_kind is not None else None for o in outcomes],
        type=pa.string(),
    )
    messages = pa.array([o.error for o in outcomes], type=pa.string())
    table = batch.drop_columns([c for c in OUTPUT_COLUMNS if c in batch.column_names])
    table = table.append_column(pa.field(EMBEDDING, embedding_type(dim)), embedding)
    table = table.append_column(pa.field(ERROR_KIND, pa.string()), kinds)
    return table.append_column(pa.field(ERROR, pa.string()), messages)


def vector_rows(batch: pa.Table) -> pa.Table:
    """The rows of ``batch`` that have a vector, without the error columns."""
    ok = batch.filter(pc.is_null(batch.column(ERROR_KIND)))
    return ok.drop_columns([ERROR_KIND, ERROR])


def error_rows(batch: pa.Table) -> pa.Table:
    """The error rows of ``batch``, without the embedding column."""
    failed = batch.filter(pc.is_valid(batch.column(ERROR_KIND)))
    return failed.drop_columns([EMBEDDING])
