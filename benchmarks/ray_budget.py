"""Ray Data actors under one submit limit: one shared budget against per-actor limiting.

The emulator (its own process) allows ``--limit`` submits per second (a one-second sliding
window) and draws job latency uniform 0.05-0.2 s; reads are free. ``embed_dataset`` embeds
``--texts`` distinct texts with 1, 2 and 4 actors on a local ``ray.init(num_cpus=2)``, in
batches of its default 64 rows (an actor finishes a batch before it takes the next):

- ``shared``: every actor takes its submit and read slots from the one budget actor, and a
  429 seen by any actor slows them all (what batch_embed ships);
- ``per-actor`` (the baseline, as Ray Data's ``HttpRequestProcessor`` with ``qps`` limits):
  each actor paces itself at the whole rate alone and learns nothing from a 429 (it retries
  after its own backoff, ignoring Retry-After, so rows still finish and can be counted).

``attempted`` is submits sent per second (accepted + 429) over the submitting window (first
to last accepted submit, sampled from the emulator every 0.05 s) divided by the limit;
``use`` the accepted submits per second over the same window divided by the limit. Shared,
``attempted`` must stay flat at the limit however many actors there are; per-actor, it grows
with them (N actors send N times the limit, and the 429s are the overrun).

    python benchmarks/ray_budget.py [--texts 600] [--limit 20] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

import pyarrow as pa
import ray
from _common import EmulatorProcess, emulator, print_table, texts, verdict, write_results

from batch_embed.ray import embed_dataset

KEY = "sk-bench-ray"
MODEL = "text-embedding-3-small"


class SubmitSampler:
    """Accepted and throttled submits at the emulator, sampled on a thread."""

    def __init__(self, emu: EmulatorProcess, every: float = 0.05) -> None:
        self._emu, self._every = emu, every
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SubmitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = self._emu.stats()
            self.samples.append(
                (time.monotonic(), stats["submits_accepted"], stats["rate_limited"]["submit"])
            )
            self._stop.wait(self._every)

    def rates(self) -> tuple[float, float]:
        """(accepted, attempted) submits/s from the first accepted submit to the last."""
        final = self.samples[-1][1]
        t0, n0, r0 = next(s for s in self.samples if s[1] > 0)
        t1, n1, r1 = next(s for s in self.samples if s[1] == final)
        seconds = max(t1 - t0, 1e-9)
        return (n1 - n0) / seconds, (n1 - n0 + r1 - r0) / seconds


def one_run(limiting: str, actors: int, n: int, limit: float) -> dict[str, Any]:
    items = [{"id": i, "text": t} for i, t in enumerate(texts(n, f"{limiting}-{actors}"))]
    with emulator(
        "--api-key", KEY, "--submit-limit", f"{limit:g}/s", "--latency", "0.05-0.2"
    ) as emu:
        ds = embed_dataset(
            ray.data.from_items(items),
            model=MODEL,
            base_url=emu.url,
            api_key=KEY,
            allow_insecure_http=True,
            workers=actors,
            rpm=limit * 60,
            read_rate=1000.0,
            limiting=limiting,  # type: ignore[arg-type]
        )
        start = time.perf_counter()
        with SubmitSampler(emu) as sampler:
            table = pa.concat_tables(ray.get(ds.to_arrow_refs()))
        wall = time.perf_counter() - start
        stats = emu.stats()
    accepted, attempted = sampler.rates()
    submits_429 = stats["rate_limited"]["submit"]
    return {
        "limiting": limiting,
        "actors": actors,
        "rows_ok": table.column("error_kind").null_count,  # rows without an error
        "paid": stats["jobs_created"],
        "texts_s": n / wall,
        "use": accepted / limit,
        "attempted": attempted / limit,
        "429s": submits_429,
        "429_share": submits_429 / max(1, stats["requests_total"]),
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--limit", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="200 texts")
    args = parser.parse_args()
    n = 200 if args.quick else args.texts
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    table = []
    for limiting in ("shared", "per-actor"):
        for actors in (1, 2, 4):
            row = one_run(limiting, actors, n, args.limit)
            print(row, flush=True)
            table.append(row)
    ray.shutdown()
    print(f"\n{n:,} texts per run ({MODEL}); the emulator allows {args.limit:g} submits/s")
    print_table(
        table,
        ("limiting", "actors", "rows_ok", "paid", "texts_s", "use", "attempted", "429s", "wall_s"),
    )
    shared = [r for r in table if r["limiting"] == "shared"]
    naive = [r for r in table if r["limiting"] == "per-actor"]
    targets = [
        {
            "target": "every row embedded, each text paid once (shared)",
            "value": ", ".join(f"{r['rows_ok']}/{r['paid']}" for r in shared),
            "result": verdict(all(r["rows_ok"] == r["paid"] == n for r in shared)),
        },
        {
            "target": "shared: limit used >= 90% with 1, 2, 4 actors",
            "value": ", ".join(f"{r['use']:.1%}" for r in shared),
            "result": verdict(all(r["use"] >= 0.9 for r in shared)),
        },
        {
            "target": "shared: attempted flat at the limit (<= 100%), 429s < 1% of requests",
            "value": ", ".join(f"{r['attempted']:.1%}/{r['429_share']:.2%}" for r in shared),
            "result": verdict(all(r["attempted"] <= 1.0 and r["429_share"] < 0.01 for r in shared)),
        },
        {
            "target": "baseline per-actor: attempted grows past the limit with actors",
            "value": ", ".join(f"{r['attempted']:.0%}" for r in naive),
            "result": verdict(naive[-1]["attempted"] > 1.5),
        },
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results(
        "ray_budget", {"texts": n, "limit": args.limit, "runs": table, "targets": targets}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
