"""The ``--engine ray`` read: batch_embed's reader in Ray read tasks, and the id pass.

``--rows`` rows in 4 JSONL files (every 100th row repeats an earlier row's id with another
text) on a local ``ray.init(num_cpus=2)``:

- ``ours``: :func:`batch_embed.ray.cli_inputs.read_inputs` (one task per file running the
  local engine's Reader: every row judged, with its line) materialized;
- ``ray read_json`` (the baseline, what the engine used before): ``ray.data.read_json`` of
  the same files materialized, which judges nothing (a bad line fails the whole read);
- ``id pass``: :func:`batch_embed.ray.duplicates.find_duplicates` over ``ours``, timed, with
  the driver's peak RSS growth per row (it holds the ids, a hash prefix and the place, 24
  bytes a row, and sorts them; the blocks it fetched are mapped from the object store).

    python benchmarks/ray_read.py [--rows 400000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from pathlib import Path

import ray
from _common import print_table, verdict, write_results

from batch_embed.inputs import resolve_inputs
from batch_embed.models import DEFAULT_MODEL, model_spec
from batch_embed.overlap import OwnPaths
from batch_embed.ray.cli_inputs import preflight, read_inputs
from batch_embed.ray.duplicates import find_duplicates
from batch_embed.reader import ReaderConfig

FILES = 4


def write_corpus(folder: Path, rows: int) -> tuple[list[Path], int]:
    """FILES JSONL files of ``rows`` rows in all; returns them and the duplicate-id rows."""
    paths, planted, per_file = [], 0, rows // FILES
    for f in range(FILES):
        path = folder / f"part-{f}.jsonl"
        with path.open("w") as out:
            for i in range(f * per_file, (f + 1) * per_file):
                key = i - 50 if i % 100 == 99 else i  # an earlier row's id, another text
                planted += key != i
                out.write(json.dumps({"id": key, "text": f"row {i}: the quick brown fox"}) + "\n")
        paths.append(path)
    return paths, planted


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true", help="40,000 rows")
    args = parser.parse_args()
    n = 40_000 if args.quick else args.rows
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.range(100).materialize()  # the workers start before anything is timed
    with tempfile.TemporaryDirectory() as tmp:
        paths, planted = write_corpus(Path(tmp), n)
        files = resolve_inputs([str(p) for p in paths], OwnPaths.directories([], []))
        config = ReaderConfig(
            text_field="text", id_field="id", batch_size=2048, model=model_spec(DEFAULT_MODEL)
        )
        fields = preflight(files, config)
        table = []
        for name, build in (
            ("ray read_json", lambda: ray.data.read_json([str(p) for p in paths])),
            ("ours", lambda: read_inputs(files, fields)),
        ):
            started = time.perf_counter()
            rows = build().materialize().count()
            wall = time.perf_counter() - started
            table.append({"read": name, "rows": rows, "rows_s": rows / wall, "wall_s": wall})
        before = peak_rss()
        started = time.perf_counter()
        found, _ = find_duplicates(read_inputs(files, fields), files, "id")
        pass_s = time.perf_counter() - started
        grown = max(peak_rss() - before, 0)
    ray.shutdown()
    print(f"\n{n:,} rows in {FILES} JSONL files, {planted:,} of them reusing an id")
    print_table(table, ("read", "rows", "rows_s", "wall_s"))
    per_row = grown / n
    print(
        f"id pass: {pass_s:.2f} s ({n / pass_s:,.0f} rows/s), driver peak RSS +{per_row:.0f} B/row"
    )
    ours, base = table[1], table[0]
    targets = [
        {
            "target": "ours reads every row",
            "value": f"{ours['rows']:,}/{n:,}",
            "result": verdict(ours["rows"] == n == base["rows"]),
        },
        {
            "target": "the id pass finds exactly the planted duplicate ids",
            "value": f"{len(found.conflicts):,}/{planted:,}",
            "result": verdict(len(found.conflicts) == planted and len(found.repeats) == 0),
        },
        {
            # The driver's index of what the output holds (id + text key) is ~150 B/row.
            "target": "id pass driver memory <= 128 B/row",
            "value": f"{per_row:.0f} B/row",
            "result": verdict(per_row <= 128),
        },
        {
            "target": "ours reads >= 2,000 rows/s a core (what one core can submit)",
            "value": f"{ours['rows_s'] / 2:,.0f} rows/s a core "
            f"({ours['rows_s'] / base['rows_s']:.0%} of read_json)",
            "result": verdict(ours["rows_s"] / 2 >= 2000),
        },
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results(
        "ray_read",
        {
            "rows": n,
            "reads": table,
            "id_pass_s": pass_s,
            "id_pass_driver_bytes_per_row": per_row,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
