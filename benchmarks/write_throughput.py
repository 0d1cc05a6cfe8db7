"""Measure the writer: add() cost, part-commit throughput per Parquet setting, and merge speed.

Every write includes the fsync that a commit pays. Vectors are random unit float32 vectors,
like real embeddings as far as compression can tell. Each figure is the best of ``--repeat``
runs. Prints a table and writes ``benchmarks/results/write_throughput.json``.

    python benchmarks/write_throughput.py [--rows 16384] [--dim 3072] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from batch_embed.models import ModelSpec
from batch_embed.writer import PARQUET_OPTIONS, PartWriter, finalize_single_file

ROWS_PER_PART = 4096
RESULTS = Path(__file__).parent / "results" / "write_throughput.json"
BSS = {"use_byte_stream_split": ["embedding.list.element"]}
NO_DICT = {"use_dictionary": False}

SETTINGS: dict[str, Mapping[str, Any]] = {
    "pyarrow defaults (snappy, dictionary, stats)": {},
    "none, no dictionary, all stats": {"compression": "none", **NO_DICT},
    "snappy, no dictionary, all stats": {"compression": "snappy", **NO_DICT},
    "lz4, no dictionary, all stats": {"compression": "lz4", **NO_DICT},
    "zstd-1, no dictionary, all stats": {"compression": "zstd", "compression_level": 1, **NO_DICT},
    "zstd-1 + byte_stream_split": {
        "compression": "zstd",
        "compression_level": 1,
        **NO_DICT,
        **BSS,
    },
    "zstd-3 + byte_stream_split": {
        "compression": "zstd",
        "compression_level": 3,
        **NO_DICT,
        **BSS,
    },
    "lz4 + byte_stream_split": {"compression": "lz4", **NO_DICT, **BSS},
    "none, no dictionary, stats on id": {**PARQUET_OPTIONS, "compression": "none"},
    "chosen + data page v2": {**PARQUET_OPTIONS, "data_page_version": "2.0"},
    "CHOSEN: writer.PARQUET_OPTIONS": PARQUET_OPTIONS,
}


def unit_vectors(rows: int, dim: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(0)
    out = rng.standard_normal((rows, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def measure_add(pool: npt.NDArray[np.float32], model: ModelSpec, work: Path, repeat: int) -> float:
    """Microseconds per add(), without any commit (the buffer never fills)."""
    n = len(pool)
    hashes = [f"{i:064x}" for i in range(n)]

    def run() -> float:
        writer = PartWriter(work / "add", model=model, key_type="int", rows_per_part=n + 1)
        add = writer.add
        start = time.perf_counter()
        for i in range(n):
            add(i, hashes[i], pool[i])
        elapsed = time.perf_counter() - start
        writer.close()  # its commit is not timed
        return elapsed / n * 1e6

    return best_of(repeat, run)


def measure_writer(
    pool: npt.NDArray[np.float32], rows: int, model: ModelSpec, work: Path, repeat: int
) -> tuple[dict[str, float], Path]:
    """The whole PartWriter path, add() and commits, with the chosen settings."""
    hashes = [f"{i:064x}" for i in range(len(pool))]
    parts_dir = work / "e2e"

    def run() -> float:
        for old in parts_dir.glob("*"):
            old.unlink()
        start = time.perf_counter()
        with PartWriter(parts_dir, model=model, key_type="int") as writer:
            for i in range(rows):
                j = i % len(pool)
                writer.add(i, hashes[j], pool[j])
        return time.perf_counter() - start

    elapsed = best_of(repeat, run)
    size = sum(p.stat().st_size for p in parts_dir.glob("part-*.parquet"))
    return figures(rows, size, elapsed), parts_dir


def measure_setting(
    table: pa.Table, parts: int, options: Mapping[str, Any], work: Path, repeat: int
) -> dict[str, float]:
    """Write ``parts`` copies of one part-sized table, each to its own fsynced file."""
    paths = [work / f"setting-{i}.parquet" for i in range(parts)]

    def run() -> float:
        start = time.perf_counter()
        for path in paths:
            with open(path, "wb") as out:
                pq.write_table(table, out, **options)
                out.flush()
                os.fsync(out.fileno())
        return time.perf_counter() - start

    elapsed = best_of(repeat, run)
    size = sum(p.stat().st_size for p in paths)
    for path in paths:
        path.unlink()
    return figures(table.num_rows * parts, size, elapsed)


def measure_finalize(parts_dir: Path, work: Path, repeat: int) -> dict[str, float]:
    """Merge the writer's parts into one file (copies kept, so every repeat merges the same)."""
    source = sorted(parts_dir.glob("part-*.parquet"))
    blobs = [p.read_bytes() for p in source]
    final = work / "merged.parquet"
    rows = 0

    def run() -> float:
        nonlocal rows
        final.unlink(missing_ok=True)
        for path, blob in zip(source, blobs, strict=True):
            path.write_bytes(blob)
        start = time.perf_counter()
        rows = finalize_single_file(parts_dir, final)
        return time.perf_counter() - start

    elapsed = best_of(repeat, run)
    return figures(rows, final.stat().st_size, elapsed)


def figures(rows: int, size: int, seconds: float) -> dict[str, float]:
    return {
        "vectors_per_s": rows / seconds,
        "mb_per_s": size / seconds / 1e6,
        "bytes_per_row": size / rows,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4 * ROWS_PER_PART)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    model = ModelSpec(slug="benchmark", dim=args.dim)
    parts = max(1, args.rows // ROWS_PER_PART)
    pool = unit_vectors(ROWS_PER_PART, args.dim)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        add_us = measure_add(pool, model, work, args.repeat)
        rows: dict[str, dict[str, float]] = {}
        rows["PartWriter add+commit (chosen)"], parts_dir = measure_writer(
            pool, parts * ROWS_PER_PART, model, work, args.repeat
        )
        table = pq.read_table(next(parts_dir.glob("part-*.parquet"))).combine_chunks()
        rows["finalize_single_file merge (chosen)"] = measure_finalize(parts_dir, work, args.repeat)
        for name, options in SETTINGS.items():
            rows[name] = measure_setting(table, parts, options, work, args.repeat)

    print(f"add(): {add_us:.2f} us per {args.dim}-dim vector (no commit)")
    print(
        f"{parts} parts x {ROWS_PER_PART} rows x {args.dim} float32, "
        f"fsync per file, best of {args.repeat}"
    )
    print(f"{'setting':52} {'vectors/s':>10} {'MB/s':>8} {'bytes/row':>10}")
    for name, row in rows.items():
        print(
            f"{name:52} {row['vectors_per_s']:10.0f} {row['mb_per_s']:8.1f} "
            f"{row['bytes_per_row']:10.1f}"
        )

    report = {
        "dim": args.dim,
        "rows_per_part": ROWS_PER_PART,
        "parts": parts,
        "repeat": args.repeat,
        "add_us_per_vector": add_us,
        "raw_bytes_per_row": args.dim * 4,
        "settings": {name: {**row} for name, row in rows.items()},
        "options": {name: dict(options) for name, options in SETTINGS.items()},
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.system()}",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp_json.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_json, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
