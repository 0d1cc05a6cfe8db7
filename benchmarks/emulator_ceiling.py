"""How many requests per second the emulator serves, per endpoint: its ceiling.

Starts ``python -m batch_embed.emulator --latency 0`` (no limits, no faults) in a
subprocess and drives it from this process with many concurrent aiohttp requests for a few
seconds per endpoint:

``submit``         ``POST /v2/{slug}``, a distinct text each time
``status``         ``GET /v2/requests/{id}/status``, cycling over the submitted ids
``result``         ``GET /v2/requests/{id}``, each submitted id once (the body is rendered:
                   the case of a real run, which fetches every result once)
``result-cached``  ``GET /v2/requests/{id}``, cycling over a few hundred ids (cached bodies)

Prints a table and writes ``benchmarks/results/emulator_ceiling.json``. Client and server
share the machine, so the figures are a floor of the server's true ceiling: if a pipeline
benchmark runs well below them, the emulator is not its bottleneck.

    python benchmarks/emulator_ceiling.py [--duration 4] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from _common import emulator

RESULTS = Path(__file__).resolve().parent / "results" / "emulator_ceiling.json"
SLUG = "text-embedding-3-large"


async def drive(
    name: str,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
    session: aiohttp.ClientSession,
    *,
    duration: float,
    concurrency: int,
) -> dict[str, Any]:
    """Run ``request`` from ``concurrency`` workers for ``duration`` seconds; count answers."""
    counter = itertools.count()
    done = 0
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            status = await request(session, next(counter))
            if status == 200:
                done += 1
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "endpoint": name,
        "requests": done,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(done / elapsed, 1),
    }


async def run(url: str, *, duration: float, concurrency: int) -> list[dict[str, Any]]:
    """Measure every endpoint in turn against the emulator at ``url``."""
    ids: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"x-api-key": "bench"}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def submit(session: aiohttp.ClientSession, i: int) -> int:
            payload = {"prompt": f"benchmark text number {i}: the quick brown fox"}
            async with session.post(f"/v2/{SLUG}", json=payload) as response:
                body = await response.json()
                if response.status == 200:
                    ids.append(body["request_id"])
                return response.status

        async def status(session: aiohttp.ClientSession, i: int) -> int:
            async with session.get(f"/v2/requests/{ids[i % len(ids)]}/status") as response:
                await response.read()
                return response.status

        async def result(session: aiohttp.ClientSession, i: int) -> int:
            async with session.get(f"/v2/requests/{ids[i % len(ids)]}") as response:
                await response.read()
                return response.status

        async def result_cached(session: aiohttp.ClientSession, i: int) -> int:
            async with session.get(f"/v2/requests/{ids[i % 256]}") as response:
                await response.read()
                return response.status

        rows = [await drive("submit", submit, session, duration=duration, concurrency=concurrency)]
        for name, request in (
            ("status", status),
            ("result", result),
            ("result-cached", result_cached),
        ):
            rows.append(
                await drive(name, request, session, duration=duration, concurrency=concurrency)
            )
        rows[2]["distinct_ids"] = len(ids)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args = parser.parse_args()
    with emulator("--latency", "0") as server:
        rows = asyncio.run(run(server.url, duration=args.duration, concurrency=args.concurrency))
    print(f"{'endpoint':<14} {'requests':>9} {'errors':>6} {'seconds':>8} {'req/s':>9}")
    for row in rows:
        print(
            f"{row['endpoint']:<14} {row['requests']:>9} {row['errors']:>6} "
            f"{row['seconds']:>8.2f} {row['requests_per_s']:>9.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "emulator_ceiling",
        "slug": SLUG,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "note": "client and server share the machine; figures are a floor of the ceiling",
        "results": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
