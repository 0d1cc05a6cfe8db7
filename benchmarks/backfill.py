"""Nightly backfill: a re-run of a 100k-row corpus with 1% of its rows changed.

Night 1 embeds the corpus (the baseline, in the same run). Night 2 changes 1% of the texts
and re-runs twice from the same night-1 output: once with the journal, once with the
journal deleted (the output re-read as the record). Each run is a child process
(``python -m batch_embed run ... --quiet``) against the emulator in another process; paid
calls are the emulator's ``jobs_created``, peak RSS the child's ``ru_maxrss`` (os.wait4).
Target: paid calls on each re-run = the changed texts, exactly.

    python benchmarks/backfill.py [--rows 100000] [--changed 0.01]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from _common import emulator, print_table, run_child, verdict, write_results


def write_corpus(path: Path, rows: int, changed: set[int]) -> None:
    with open(path, "wb") as out:
        for i in range(rows):
            text = f"backfill row {i}: the quick brown fox" + (" (edited)" if i in changed else "")
            out.write(orjson.dumps({"id": i, "text": text}) + b"\n")


def run(source: Path, out: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "batch_embed", "run", str(source), "--output", str(out),
        "--model", args.model, "--base-url", url, "--rpm", str(args.rpm),
        "--read-rate", str(args.read_rate), "--quiet",
    ]  # fmt: skip
    return run_child(cmd, {**os.environ, "SEGMIND_API_KEY": "bench"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--model", default="text-embedding-3-small")
    parser.add_argument("--rpm", type=float, default=60 * 2000.0)
    parser.add_argument("--read-rate", type=float, default=4000.0)
    args = parser.parse_args()
    changed = set(range(0, args.rows, round(1 / args.changed)))
    table: list[dict[str, Any]] = []
    with (
        emulator("--latency", "0-0.05", "--retention", "3600") as emu,
        tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp,
    ):
        work = Path(tmp)
        source, night1 = work / "in.jsonl", work / "night1"
        write_corpus(source, args.rows, set())
        before = emu.stats()["jobs_created"]
        first = run(source, night1 / "out.parquet", emu.url, args)
        paid = emu.stats()["jobs_created"] - before
        table.append({"run": "night 1 (baseline)", "paid": paid, "expected": args.rows, **first})
        write_corpus(source, args.rows, changed)
        for label, keep_journal in (
            ("night 2, journal kept", True),
            ("night 2, no journal", False),
        ):
            night2 = work / label.replace(" ", "_").replace(",", "")
            shutil.copytree(night1, night2)
            if not keep_journal:
                shutil.rmtree(night2 / "out.parquet.batch_embed")
            before = emu.stats()["jobs_created"]
            result = run(source, night2 / "out.parquet", emu.url, args)
            paid = emu.stats()["jobs_created"] - before
            table.append({"run": label, "paid": paid, "expected": len(changed), **result})
            shutil.rmtree(night2)
    for row in table:
        print(row, flush=True)
    print(f"\n{args.rows:,} rows, {len(changed):,} changed ({args.model}); emulator in its process")
    print_table(table, ("run", "exit", "paid", "expected", "wall_s", "peak_rss_mb"))
    reruns = table[1:]
    targets = [
        {
            "target": "paid calls of each re-run = the changed texts",
            "value": ", ".join(str(r["paid"]) for r in reruns) + f" (changed {len(changed)})",
            "result": verdict(all(r["paid"] == r["expected"] and r["exit"] == 0 for r in reruns)),
        }
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results("backfill", {"rows": args.rows, "runs": table, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
