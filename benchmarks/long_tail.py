"""Long tail: job latency 0.2-1.0 s plus cold starts (a few percent of jobs wait 10-60 s more).

The emulator (its own process) has no limit; batch_embed runs with ``--rpm`` and
``--read-rate`` budgets, and the SDK baseline (thread pool, ``wait(interval=1.0)``) runs the
same kind of corpus. Reports polls per job, requests per text and throughput.

    python benchmarks/long_tail.py [--texts 2000] [--cold-start-rate 0.04] [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import emulator, print_table, run_batch_embed, run_sdk, texts, verdict, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--cold-start-rate", type=float, default=0.04)
    parser.add_argument("--cold-start", default="10-60")
    parser.add_argument("--rpm", type=float, default=6000.0, help="batch_embed submits/min")
    parser.add_argument("--read-rate", type=float, default=200.0, help="batch_embed reads/s")
    parser.add_argument("--sdk-threads", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="400 texts")
    args = parser.parse_args()
    if args.quick:
        args.texts = 400
    rows: list[dict[str, Any]] = []
    with emulator(
        "--latency",
        "0.2-1.0",
        "--cold-start-rate",
        str(args.cold_start_rate),
        "--cold-start",
        args.cold_start,
        "--seed",
        "11",
    ) as emu:
        runs = [
            run_batch_embed(emu, texts(args.texts, "tail"), rpm=args.rpm, read_rate=args.read_rate),
            run_sdk(emu, texts(args.texts, "tail sdk"), threads=args.sdk_threads),
        ]
    for run in runs:
        fig = run.figures()
        rows.append(
            {
                "client": fig["client"],
                "texts": fig["texts"],
                "embedded": fig["embedded"],
                "lost": fig["lost"],
                "wall_s": fig["wall_s"],
                "texts_per_s": fig["texts_per_s"],
                "polls_per_job": fig["polls_per_text"],
                "requests_per_text": fig["requests_per_text"],
                "rate_limited_429": fig["rate_limited_429"],
                "client_stats": run.client,
            }
        )
    print(
        f"latency 0.2-1.0 s + cold start {args.cold_start} s for {args.cold_start_rate:.0%} "
        f"of jobs; batch_embed rpm {args.rpm:g}, read_rate {args.read_rate:g}/s"
    )
    cols = [c for c in rows[0] if c != "client_stats"]
    print_table(rows, cols)
    be = rows[0]
    targets = [
        {
            "target": "requests per text <= 3.5 with the cold-start tail",
            "value": be["requests_per_text"],
            "result": verdict(be["requests_per_text"] <= 3.5),
        }
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results(
        "long_tail",
        {
            "texts": args.texts,
            "cold_start_rate": args.cold_start_rate,
            "cold_start": args.cold_start,
            "rows": rows,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
