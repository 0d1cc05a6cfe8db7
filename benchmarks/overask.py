"""Over-asking: ``rpm`` set to twice the server's real submit limit, with and without Retry-After.

The emulator (its own process) limits submits to ``--limit`` per second (reads free) and
answers every 429 with ``Retry-After`` (``retry_after_rate=1``) or never (``0``). batch_embed
is told ``rpm = 2 * 60 * limit``. The emulator's counters are sampled every 0.5 s:

``settle_s``       time after which no 1-s window has more than 5% of its submits answered 429
``steady_share``   accepted submits/s over the second half of the run, over the real limit
``share_429``      429s over all requests of the run

    python benchmarks/overask.py [--texts 2000] [--limit 50] [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import emulator, print_table, run_batch_embed, texts, verdict, write_results


def analyse(series: list[tuple[float, dict[str, Any]]], limit: float) -> dict[str, float]:
    points = [(t, s["submits_accepted"], s["rate_limited"]["submit"]) for t, s in series]
    last_submit = next(
        (t for t, acc, _ in points if acc >= points[-1][1]), points[-1][0]
    )  # submitting ends here; the rest is the latency tail
    settle = 0.0
    for (_, a0, r0), (t1, a1, r1) in zip(points, points[2:], strict=False):
        if t1 > last_submit:
            break
        sent = (a1 - a0) + (r1 - r0)
        if sent and (r1 - r0) / sent > 0.05:
            settle = t1
    half = last_submit / 2
    a_half = next(acc for t, acc, _ in points if t >= half)
    t_half = next(t for t, _, _ in points if t >= half)
    steady = (
        (points[-1][1] - a_half) / max(last_submit - t_half, 1e-9) if last_submit > t_half else 0.0
    )
    return {
        "submit_phase_s": round(last_submit, 2),
        "settle_s": round(settle, 2),
        "steady_submits_per_s": round(steady, 1),
        "steady_share": round(steady / limit, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=50, help="real submit limit, per second")
    parser.add_argument("--factor", type=float, default=2.0, help="rpm over the real limit")
    parser.add_argument("--quick", action="store_true", help="600 texts")
    args = parser.parse_args()
    if args.quick:
        args.texts = 600
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for retry_after in (1.0, 0.0):
        with emulator(
            "--latency",
            "0.2-1.0",
            "--submit-limit",
            f"{args.limit}/s",
            "--retry-after-rate",
            str(retry_after),
        ) as emu:
            rpm = args.factor * 60 * args.limit
            run = run_batch_embed(
                emu,
                texts(args.texts, f"over {retry_after}"),
                rpm=rpm,
                read_rate=10 * args.limit,
                sample=True,
            )
        fig = run.figures()
        row = {
            "retry_after": "always" if retry_after else "never",
            "rpm": rpm,
            "real_limit_per_s": args.limit,
            "embedded": fig["embedded"],
            "wall_s": fig["wall_s"],
            **analyse(run.series, args.limit),
            "rate_limited_429": fig["rate_limited_429"],
            "share_429": fig["share_429"],
            "requests_per_text": fig["requests_per_text"],
        }
        rows.append(row)
        raw.append(
            {
                **row,
                "client_stats": run.client,
                "series": [
                    (round(t, 2), s["submits_accepted"], s["rate_limited"]["submit"])
                    for t, s in run.series
                ],
            }
        )
    print(f"rpm = {args.factor:g} x the real submit limit of {args.limit}/s; latency 0.2-1.0 s")
    print_table(rows, list(rows[0]))
    targets = []
    for row in rows:
        targets.append(
            {
                "target": (
                    f"over-asking 2x (Retry-After {row['retry_after']}): >= 90% of limit, < 5% 429s"
                ),
                "value": f"{row['steady_share']} / {row['share_429']}",
                "result": verdict(row["steady_share"] >= 0.9 and row["share_429"] < 0.05),
            }
        )
    print()
    print_table(targets, ("target", "value", "result"))
    write_results(
        "overask",
        {
            "texts": args.texts,
            "limit_per_s": args.limit,
            "factor": args.factor,
            "rows": raw,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
