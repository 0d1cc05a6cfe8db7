"""Client cost: texts/s and client CPU milliseconds per text, batch_embed against the SDK.

The emulator runs in its own process with no limit and near-zero latency (0-0.01 s), so
the client is the bottleneck. batch_embed is told rates far above what one core can do
(10,000 submits/s, 20,000 reads/s), as a user with no server limit would tell it; at lower
rates its limiter, not its CPU, sets the pace, and an idle loop wakes more often per text.
CPU is ``time.process_time()`` of this process (the client only: user + system, all
threads), divided by the texts embedded. batch_embed's figure is end to end: reading,
journal, submits, polls, fetches, vector parsing, Parquet writing. It runs ``--repeat``
times in this process, each a whole run (journal, output, all), and the target is judged on
the median: the first run also pays the process's first touch of its memory, which a real
corpus (minutes to days) spreads over far more texts. The SDK decodes the output the
natural way (``json.loads`` of the output string, a list). A third client, ``aiohttp
floor``, is the least any aiohttp client can spend: per text one bare submit, status polls
until COMPLETED, one result read, nothing decoded, journalled or written (the same
connection pool size and concurrency, the same event loop). A last batch_embed run under
cProfile shows where its CPU goes (top 15, cumulative).

    python benchmarks/client_cost.py [--texts 10000] [--repeat 3] [--sdk-texts 5000] [--quick]
"""

from __future__ import annotations

import argparse
import io
import pstats
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    ClientRun,
    EmulatorProcess,
    emulator,
    print_table,
    run_batch_embed,
    run_sdk,
    texts,
    verdict,
    write_results,
)


def run_aiohttp_floor(emu: EmulatorProcess, items: list[str], concurrency: int = 256) -> ClientRun:
    """Three bare aiohttp exchanges per text (submit, poll until done, read the result)."""
    import asyncio
    import time

    import aiohttp
    import orjson

    from batch_embed.loop import run

    async def main() -> int:
        headers = {"x-api-key": "bench"}
        post_headers = {**headers, "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            gate = asyncio.Semaphore(concurrency)

            async def one(text: str) -> bool:
                async with gate:
                    body = orjson.dumps({"prompt": text})
                    url = f"{emu.url}/v2/text-embedding-3-large"
                    async with session.post(url, data=body, headers=post_headers) as resp:
                        job = orjson.loads(await resp.read())
                    while True:
                        async with session.get(job["status_url"], headers=headers) as resp:
                            state = orjson.loads(await resp.read())["status"]
                        if state == "COMPLETED":
                            break
                        await asyncio.sleep(0.01)
                    async with session.get(job["response_url"], headers=headers) as resp:
                        return len(await resp.read()) > 0

            return sum(await asyncio.gather(*(one(t) for t in items)))

    emu.reset()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = run(main())  # on the same event loop as batch_embed's run
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return ClientRun("aiohttp floor", len(items), done, len(items) - done, wall, cpu, emu.stats())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--texts", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of batch_embed (median)")
    parser.add_argument("--sdk-texts", type=int, default=5000)
    parser.add_argument("--rpm", type=float, default=60 * 10000.0)
    parser.add_argument("--read-rate", type=float, default=20000.0)
    parser.add_argument("--sdk-threads", type=int, default=16)
    parser.add_argument("--sdk-interval", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="1000 texts, 500 for the SDK")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.sdk_texts = 1000, 500
    rows: list[dict[str, Any]] = []
    with emulator("--latency", "0-0.01") as emu:
        be_runs = [
            run_batch_embed(
                emu, texts(args.texts, f"cost {i}"), rpm=args.rpm, read_rate=args.read_rate
            )
            for i in range(args.repeat)
        ]
        runs = [
            *be_runs,
            run_sdk(
                emu,
                texts(args.sdk_texts, "cost sdk"),
                threads=args.sdk_threads,
                interval=args.sdk_interval,
            ),
            run_aiohttp_floor(emu, texts(args.texts, "cost floor")),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            prof = Path(tmp) / "be.prof"
            run_batch_embed(
                emu,
                texts(min(args.texts, 5000), "cost prof"),
                rpm=args.rpm,
                read_rate=args.read_rate,
                profile=prof,
            )
            out = io.StringIO()
            pstats.Stats(str(prof), stream=out).sort_stats("cumulative").print_stats(15)
            profile_text = out.getvalue()
    for i, run in enumerate(runs):
        fig = run.figures()
        if i < len(be_runs):
            fig["client"] = f"batch_embed run {i + 1}"
        rows.append(
            {
                k: fig[k]
                for k in (
                    "client",
                    "texts",
                    "embedded",
                    "lost",
                    "wall_s",
                    "texts_per_s",
                    "cpu_ms_per_text",
                    "requests_per_text",
                )
            }
        )
    print("no limit, latency 0-0.01 s; CPU = process time of the client process")
    print_table(rows, list(rows[0]))
    print("\nbatch_embed under cProfile, top 15 by cumulative time:")
    print(
        profile_text[profile_text.find("ncalls") - 2 :]
        if "ncalls" in profile_text
        else profile_text
    )
    *be_rows, sdk, floor = rows
    be_cpu = statistics.median(r["cpu_ms_per_text"] for r in be_rows)
    targets = [
        {
            "target": "client CPU <= 0.5 ms per text (end to end, median of the runs)",
            "value": (
                f"{be_cpu} (runs {', '.join(str(r['cpu_ms_per_text']) for r in be_rows)}; "
                f"SDK {sdk['cpu_ms_per_text']}, bare aiohttp {floor['cpu_ms_per_text']})"
            ),
            "result": verdict(be_cpu <= 0.5),
        }
    ]
    print_table(targets, ("target", "value", "result"))
    write_results(
        "client_cost",
        {
            "texts": args.texts,
            "latency": [0, 0.01],
            "rows": rows,
            "profile_top15": profile_text,
            "targets": targets,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
