"""Budget use: N texts under a server limit, batch_embed against the official SDK in one run.

The emulator (its own process) draws job latency uniform 0.2-1.0 s and enforces either
(a) one shared limit on every request (submits + status polls + result fetches), or
(b) a limit on submits only (reads free). Under (a) batch_embed runs twice:
``--shared-limit`` with ``rpm = 60*L`` (the user knows every request counts: one budget),
and with two budgets split to sum to the limit, ``rpm = 60*L*s/(s+r)`` submits a minute and
``read_rate = L*r/(s+r)`` reads a second, for each ``--splits`` ratio ``s:r`` (the default
when it is not known whether reads count). The baseline is the SDK used the natural way: a
thread pool, each thread ``submit_async(...).wait(interval=1.0)``; a text whose call raises
is lost (jobs may have been created and billed all the same: ``jobs_created`` counts them).

``limit_used`` is requests (shared) or submits (submits-only) accepted per second over the
whole run, start-up and the last jobs' latency included, divided by the limit; ``steady``
is the same over the middle 80% of the run (sampled from the emulator every 0.5 s). The
runs with a limit set exactly right last ``--long-seconds`` of the limit (default 120 s:
8,000 texts shared, 24,000 submits-only), so that the last jobs' latency (about 1 s, which
no client can use: 2.5% of a 40-second run, under 1% of a 2-minute one) weighs on the run as
it would on a real corpus, not a toy. Ideal wall time: requests / L (shared), N / L
(submits).

    python benchmarks/budget.py [--texts 2000] [--long-seconds 120] [--limit 200] [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import (
    api_requests,
    emulator,
    print_table,
    run_batch_embed,
    run_sdk,
    texts,
    verdict,
    write_results,
)

IDEAL_REQUESTS_PER_TEXT = 3.0
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
    "steady",
    "jobs_created",
)


def steady_use(
    series: list[tuple[float, dict[str, Any]]], limit: float, *, shared: bool
) -> float | None:
    """Accepted requests (shared) or submits per second over the middle 80% of the run,
    over the limit."""
    if len(series) < 4:
        return None
    end = series[-1][0]
    middle = [(t, s) for t, s in series if 0.1 * end <= t <= 0.9 * end]
    if len(middle) < 2:
        return None
    (t0, first), (t1, last) = middle[0], middle[-1]

    def count(stats: dict[str, Any]) -> int:
        return api_requests(stats) if shared else int(stats["submits_accepted"])

    return round((count(last) - count(first)) / (t1 - t0) / limit, 3)


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
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=120.0,
        help="ideal length of the runs with the limit set exactly right (default: 120)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="400 texts (15 s long runs), one split, 16 threads"
    )
    args = parser.parse_args()
    if args.quick:
        args.texts, args.long_seconds = 400, 15.0
        args.splits = args.splits.split(",")[0]
    limit = args.limit
    shared_texts = round(args.long_seconds * limit / IDEAL_REQUESTS_PER_TEXT)
    submit_texts = round(args.long_seconds * limit)
    splits = [parse_split(s) for s in args.splits.split(",")]
    threads = [int(t) for t in args.sdk_threads.split(",")]
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []

    def record(scenario: str, run: Any, ideal_rpt: float | None, extra: dict[str, Any]) -> None:
        fig = run.figures()
        shared = scenario.startswith("shared")
        used = (
            fig["requests"] / run.wall / limit
            if shared
            else (run.server["submits_accepted"] / run.wall / limit)
        )
        ideal = (fig["requests"] if ideal_rpt is None else fig["embedded"] * ideal_rpt) / limit
        row = {
            "scenario": scenario,
            **fig,
            "ideal_s": round(ideal, 2),
            "limit_used": round(used, 3),
            "steady": steady_use(run.series, limit, shared=shared),
        }
        row.update(extra)
        rows.append(row)
        raw.append({**row, "client_stats": run.client})

    # (a) one shared limit --------------------------------------------------------------------
    with emulator("--latency", "0.2-1.0", "--shared-limit", f"{limit}/s") as emu:
        run = run_batch_embed(
            emu,
            texts(shared_texts, "shared one budget"),
            rpm=60 * limit,
            read_rate=1.0,  # not used with shared_limit
            shared_limit=True,
            sample=True,
        )
        record(
            f"shared {limit}/s",
            run,
            None,
            {"client": "batch_embed --shared-limit", "rpm": 60 * limit},
        )
        for s, r in splits:
            rpm = 60 * limit * s / (s + r)
            read_rate = limit * r / (s + r)
            run = run_batch_embed(
                emu,
                texts(args.texts, f"shared {s}:{r}"),
                rpm=rpm,
                read_rate=read_rate,
                sample=True,
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
            emu,
            texts(submit_texts, "submits"),
            rpm=60 * limit,
            read_rate=20 * limit,
            sample=True,
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

    one = next(r for r in rows if r["client"] == "batch_embed --shared-limit")
    best = max(
        (r for r in rows if r["client"].startswith("batch_embed ") and r is not one),
        key=lambda r: r["limit_used"],
    )
    sub = next(
        r for r in rows if r["client"] == "batch_embed" and r["scenario"].startswith("submits")
    )
    targets = [
        {
            "target": "requests per text <= 3.15 (latency 0.2-1.0, shared limit)",
            "value": f"{one['requests_per_text']} (two budgets: {best['requests_per_text']})",
            "result": verdict(max(one["requests_per_text"], best["requests_per_text"]) <= 3.15),
        },
        {
            "target": "shared limit set exactly right (--shared-limit): >= 97% used, < 1% 429",
            "value": f"{one['limit_used']} (steady {one['steady']}) / {one['share_429']}",
            "result": verdict(one["limit_used"] >= 0.97 and one["share_429"] < 0.01),
        },
        {
            "target": "submits-only limit set exactly right: >= 97% used, < 1% 429",
            "value": f"{sub['limit_used']} (steady {sub['steady']}) / {sub['share_429']}",
            "result": verdict(sub["limit_used"] >= 0.97 and sub["share_429"] < 0.01),
        },
        {
            "target": "(information) shared limit, two budgets split to sum to it",
            "value": f"{best['limit_used']} (steady {best['steady']}) / {best['share_429']}",
            "result": "-",
        },
    ]
    print(f"\ntargets (best split: {best['client']})")
    print_table(targets, ("target", "value", "result"))
    write_results(
        "budget",
        {
            "texts": args.texts,
            "long_seconds": args.long_seconds,
            "limit_per_s": limit,
            "latency": [0.2, 1.0],
            "rows": raw,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
