"""One 200 MB JSONL line through ``batch-embed run --emulate`` (issue 16, point 5).

The CLI runs as a child process; wall time and peak RSS
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, each case in a fresh child of its own)
are compared with a one-short-line run, the baseline, in the same invocation. The giant line
fails as too_long (exit 3), and with ``--truncate`` is cut and embedded (exit 0).
Goal: under 5 s and 1.2 GB peak RSS.

    python benchmarks/giant_text.py [--mb 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS, GOAL_MB = 5.0, 1200.0
WORDS = "the quick brown fox jumps over the lazy dog "


def child(source: str, out: str, truncate: bool) -> dict[str, object]:
    command = [sys.executable, "-m", "batch_embed", "run", source, "--output", out,
               "--emulate", "--quiet", *(["--truncate"] if truncate else [])]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exit": done.returncode, "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak_kb / 1024, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="the giant line's size (MB)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        source, out, truncate = args.child
        print(json.dumps(child(source, out, truncate == "1")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small, giant = Path(tmp) / "small.jsonl", Path(tmp) / "giant.jsonl"
        small.write_text(json.dumps({"id": 1, "text": "a short text"}) + "\n")
        size = args.mb * 10**6
        text = (WORDS * (size // len(WORDS) + 1))[:size]
        giant.write_text(json.dumps({"id": 1, "text": text}) + "\n")
        del text
        rows = []
        for name, source, truncate in (
            ("baseline (1 short line)", small, "0"),
            (f"{args.mb} MB line", giant, "0"),
            (f"{args.mb} MB line --truncate", giant, "1"),
        ):
            out = Path(tmp) / f"out-{len(rows)}.parquet"
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(source), str(out), truncate],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append((name, json.loads(run.stdout)))
    print(f"{'case':<28} {'exit':>4} {'s':>6} {'peak RSS MB':>11}  goal <{GOAL_SECONDS:g} s, "
          f"<{GOAL_MB:g} MB")  # fmt: skip
    for name, row in rows:
        ok = row["seconds"] < GOAL_SECONDS and row["peak_rss_mb"] < GOAL_MB
        print(f"{name:<28} {row['exit']:>4} {row['seconds']:>6} {row['peak_rss_mb']:>11}  "
              f"{'PASS' if ok else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
