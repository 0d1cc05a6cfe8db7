"""Memory: peak RSS of ``batch-embed run`` over 10k, 100k and 1M rows; it must stay flat.

Each size runs the CLI as a child process (``python -m batch_embed run ... --quiet``)
against the emulator in another process (latency 0-0.05 s, no limit). Peak RSS is the
child's ``ru_maxrss`` from ``os.wait4`` (the kernel's figure, no sampling gap). Inputs are
generated as JSONL in a temp dir; outputs use ``text-embedding-3-small`` (1536 dims) to
spare the disk and are deleted after each size.

    python benchmarks/memory.py [--sizes 10000,100000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emulator, print_table, verdict, write_jsonl, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--model", default="text-embedding-3-small")
    parser.add_argument("--rpm", type=float, default=60 * 2000.0)
    parser.add_argument("--read-rate", type=float, default=4000.0)
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows")
    args = parser.parse_args()
    if args.quick:
        args.sizes = "10000,100000"
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    with emulator("--latency", "0-0.05", "--retention", "600") as emu:
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
                work = Path(tmp)
                source = write_jsonl(
                    work / "in.jsonl",
                    (f"memory {size} row {i}: the quick brown fox jumps" for i in range(size)),
                )
                cmd = [
                    sys.executable,
                    "-m",
                    "batch_embed",
                    "run",
                    str(source),
                    "--output",
                    str(work / "out"),
                    "--model",
                    args.model,
                    "--base-url",
                    emu.url,
                    "--rpm",
                    str(args.rpm),
                    "--read-rate",
                    str(args.read_rate),
                    "--quiet",
                ]
                env = {**os.environ, "SEGMIND_API_KEY": "bench"}
                start = time.perf_counter()
                child = subprocess.Popen(
                    cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                _, status, usage = os.wait4(child.pid, 0)
                wall = time.perf_counter() - start
                child.returncode = os.waitstatus_to_exitcode(status)
                stderr = child.stderr.read().decode() if child.stderr else ""
                out_bytes = sum(p.stat().st_size for p in (work / "out").rglob("*") if p.is_file())
                shutil.rmtree(work / "out", ignore_errors=True)
            cpu = usage.ru_utime + usage.ru_stime
            rows.append(
                {
                    "rows": size,
                    "exit": child.returncode,
                    "wall_s": round(wall, 1),
                    "rows_per_s": round(size / wall, 1),
                    "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                    "cpu_ms_per_row": round(cpu / size * 1000, 3),
                    "output_mb": round(out_bytes / 1e6, 1),
                }
            )
            if child.returncode != 0:
                rows[-1]["stderr"] = stderr[-500:]
            print(rows[-1], flush=True)
    print(
        f"\npeak RSS of the batch-embed child process ({args.model}); emulator in its own process"
    )
    print_table(
        rows, ("rows", "exit", "wall_s", "rows_per_s", "peak_rss_mb", "cpu_ms_per_row", "output_mb")
    )
    base, top = rows[0], rows[-1]
    ratio = top["peak_rss_mb"] / base["peak_rss_mb"]
    targets = [
        {
            "target": (
                f"peak RSS at {top['rows']:,} rows within 1.2x of {base['rows']:,} and < 300 MB"
            ),
            "value": f"{top['peak_rss_mb']} MB = {ratio:.2f}x",
            "result": verdict(
                ratio <= 1.2 and top["peak_rss_mb"] < 300 and top["rows"] >= 1_000_000
            ),
        }
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results("memory", {"model": args.model, "rows": rows, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
