"""Budget use: N texts under a server limit, batch_embed against the official SDK in one run.

The emulator (its own process) draws job latency uniform 0.2-1.0 s and enforces either
(a) one shared limit on every request (submits + status polls + result fetches), or
(b) a limit on submits only (reads free). batch_embed runs in this process; for the shared
limit its two budgets are split so they sum to the limit: ``rpm = 60*L*s/(s+r)`` submits a
minute and ``read_rate = L*r/(s+r)`` reads a second, for each ``--splits`` ratio ``s:r``.
The baseline is the SDK used the natural way: a thread pool, each thread
``submit_async(...).wait(interval=1.0)``; a text whose call raises is lost (jobs may have
been created and billed all the same: ``jobs_created`` counts them).

Ideal wall time: ``N * requests_per_text / L`` under the shared limit (3.1 requests per
text: one submit, about 1.1 polls, one fetch), ``N / L`` under the submits-only limit.

    python benchmarks/budget.py [--texts 2000] [--limit 200] [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import emulator, print_table, run_batch_embed, run_sdk, texts, verdict, write_results

IDEAL_REQUESTS_PER_TEXT = 3.1
COLUMNS = (
    "scenario",
    "client",
    "texts",
    "embedded",
    "lost",
    "wall_s",
    "ideal_s",
    "texts_per_s",
    "requests_per_text",
    "submits_per_text",
    "polls_per_text",
    "fetches_per_text",
    "rate_limited_429",
    "share_429",
    "limit_used",
    "jobs_created",
)


def parse_split(text: str) -> tuple[float, float]:
    s, _, r = text.partition(":")
    return float(s), float(r)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--texts", type=int, default=2000, help="texts for batch_embed")
    parser.add_argument("--limit", type=int, default=200, help="server limit, requests/s")
    parser.add_argument(
        "--splits",
        default="1:2.1,1:2.5",
        help="submit:read budget ratios tried under the shared limit (default: 1:2.1,1:2.5)",
    )
    parser.add_argument(
        "--sdk-threads", default="16,64", help="SDK thread pool sizes (default: 16,64)"
    )
    parser.add_argument(
        "--sdk-texts",
        type=int,
        default=None,
        help="texts per SDK run (default: min(texts, 25 * threads), to bound its wall time)",
    )
    parser.add_argument("--quick", action="store_true", help="400 texts, one split")
    args = parser.parse_args()
    if args.quick:
        args.texts = 400
        args.splits = args.splits.split(",")[0]
    limit = args.limit
    splits = [parse_split(s) for s in args.splits.split(",")]
    threads = [int(t) for t in args.sdk_threads.split(",")]
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []

    def record(scenario: str, run: Any, ideal_rpt: float, extra: dict[str, Any]) -> None:
        fig = run.figures()
        used = (
            fig["requests"] / run.wall / limit
            if scenario.startswith("shared")
            else (run.server["submits_accepted"] / run.wall / limit)
        )
        ideal = fig["embedded"] * ideal_rpt / limit
        row = {
            "scenario": scenario,
            **fig,
            "ideal_s": round(ideal, 2),
            "limit_used": round(used, 3),
        }
        row.update(extra)
        rows.append(row)
        raw.append({**row, "client_stats": run.client})

    # (a) one shared limit --------------------------------------------------------------------
    with emulator("--latency", "0.2-1.0", "--shared-limit", f"{limit}/s") as emu:
        for s, r in splits:
            rpm = 60 * limit * s / (s + r)
            read_rate = limit * r / (s + r)
            run = run_batch_embed(
                emu, texts(args.texts, f"shared {s}:{r}"), rpm=rpm, read_rate=read_rate
            )
            record(
                f"shared {limit}/s",
                run,
                IDEAL_REQUESTS_PER_TEXT,
                {
                    "client": f"batch_embed {s:g}:{r:g}",
                    "rpm": round(rpm, 1),
                    "read_rate": round(read_rate, 1),
                },
            )
        for n in threads:
            count = args.sdk_texts or min(args.texts, 25 * n)
            run = run_sdk(emu, texts(count, f"sdk shared {n}"), threads=n)
            record(f"shared {limit}/s", run, IDEAL_REQUESTS_PER_TEXT, {})

    # (b) submits-only limit ------------------------------------------------------------------
    with emulator("--latency", "0.2-1.0", "--submit-limit", f"{limit}/s") as emu:
        run = run_batch_embed(
            emu, texts(args.texts, "submits"), rpm=60 * limit, read_rate=20 * limit
        )
        record(f"submits {limit}/s", run, 1.0, {"rpm": 60 * limit, "read_rate": 20 * limit})
        n = max(threads)
        count = args.sdk_texts or min(args.texts, 25 * n)
        run = run_sdk(emu, texts(count, f"sdk submits {n}"), threads=n)
        record(f"submits {limit}/s", run, 1.0, {})

    print(
        f"latency 0.2-1.0 s; ideal = embedded * {IDEAL_REQUESTS_PER_TEXT} / limit (shared), "
        "embedded / limit (submits-only); limit_used = requests/s (shared) or submits/s "
        "(submits-only) over the limit"
    )
    print_table(rows, COLUMNS)

    best = max(
        (
            r
            for r in rows
            if r["client"].startswith("batch_embed") and r["scenario"].startswith("shared")
        ),
        key=lambda r: r["limit_used"],
    )
    targets = [
        {
            "target": "requests per text <= 3.15 (latency 0.2-1.0, shared limit)",
            "value": best["requests_per_text"],
            "result": verdict(best["requests_per_text"] <= 3.15),
        },
        {
            "target": "limit set exactly right: >= 97% of the limit used",
            "value": best["limit_used"],
            "result": verdict(best["limit_used"] >= 0.97),
        },
        {
            "target": "limit set exactly right: < 1% of requests answered 429",
            "value": best["share_429"],
            "result": verdict(best["share_429"] < 0.01),
        },
    ]
    sub = next(
        r for r in rows if r["client"] == "batch_embed" and r["scenario"].startswith("submits")
    )
    targets.append(
        {
            "target": "submits-only limit: >= 97% of the limit used, < 1% 429s",
            "value": f"{sub['limit_used']} / {sub['share_429']}",
            "result": verdict(sub["limit_used"] >= 0.97 and sub["share_429"] < 0.01),
        }
    )
    print(f"\ntargets (best split: {best['client']})")
    print_table(targets, ("target", "value", "result"))
    write_results(
        "budget",
        {
            "texts": args.texts,
            "limit_per_s": limit,
            "latency": [0.2, 1.0],
            "rows": raw,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
