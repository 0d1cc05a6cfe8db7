"""Helpers for end-to-end runs: corpora on disk, an emulator, and checks of what a run wrote."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batch_embed.config import RunConfig
from batch_embed.emulator import expected_vector
from batch_embed.error_sink import read_errors
from batch_embed.layout import OutputLayout
from batch_embed.writer import read_output

DIM = 3072
FAST = (0.02, 0.1)
"""A short job latency for end-to-end tests."""


def run_config(
    url: str, inputs: Path | Sequence[Path], output: Path, *, key: str, **overrides: object
) -> RunConfig:
    """A RunConfig for a fast end-to-end run against an emulator at ``url``."""
    sources = [inputs] if isinstance(inputs, Path) else list(inputs)
    settings: dict[str, object] = {
        "inputs": tuple(str(p) for p in sources),
        "output": output,
        "base_url": url,
        "api_key": key,
        "id_field": "id",
        "rpm": 6000.0,
        "read_rate": 400.0,
        "retention": 60.0,
        "retention_margin": 5.0,
    }
    settings.update(overrides)
    return RunConfig(**settings)  # type: ignore[arg-type]


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    """Write records as JSONL (a ``bytes`` record is written as a raw line)."""
    with open(path, "wb") as out:
        for record in records:
            out.write(record if isinstance(record, bytes) else orjson.dumps(record))
            out.write(b"\n")
    return path


def write_parquet(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(list(records)), path)
    return path


def corpus(n: int, *, start: int = 0, distinct: int | None = None) -> list[dict[str, Any]]:
    """``n`` rows with int ids; ``distinct`` < n makes texts repeat."""
    distinct = distinct or n
    return [
        {"id": i, "text": f"row text {i % distinct} of the corpus"} for i in range(start, start + n)
    ]


def output_rows(layout: OutputLayout) -> dict[Any, np.ndarray]:
    """The output as ``{id: vector}``, failing on a duplicated id."""
    table = read_output(layout.output)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an id appears twice in the output"
    if not ids:
        return {}
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return dict(zip(ids, flat.reshape(len(ids), DIM), strict=True))


def error_rows(layout: OutputLayout) -> dict[Any, dict[str, object]]:
    records = read_errors(layout.errors)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an id appears twice in the errors output"
    return {r["id"]: r for r in records}


def assert_vectors(rows: dict[Any, np.ndarray], texts: dict[Any, str]) -> None:
    """Every output row carries the vector of its own text, bit for bit."""
    for key, vector in rows.items():
        assert np.array_equal(vector, expected_vector(texts[key], DIM)), f"wrong vector for {key}"
