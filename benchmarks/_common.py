"""Shared helpers of the benchmarks: the emulator subprocess, inputs, the two clients, tables.

The emulator always runs in its own process (``python -m batch_embed.emulator --port 0``),
so the CPU time this process spends is the client's alone. Each client run returns the
emulator's counters for that run (reset before it), the wall time and the client CPU time.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SLUG = "text-embedding-3-large"
DATE = "2026-11-24"


def machine() -> dict[str, Any]:
    return {
        "date": DATE,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
    }


# -- the emulator ----------------------------------------------------------------------------


@dataclass
class EmulatorProcess:
    """A running ``python -m batch_embed.emulator`` and its URL."""

    process: subprocess.Popen[str]
    url: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_emulator/stats", timeout=10) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/_emulator/reset-stats", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def configure(self, **changes: Any) -> None:
        request = urllib.request.Request(
            self.url + "/_emulator/config",
            data=json.dumps(changes).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


@contextmanager
def emulator(*switches: str) -> Iterator[EmulatorProcess]:
    """Start the emulator in a subprocess with ``switches``; stop it (by its pid) after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_embed.emulator", "--port", "0", *switches],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("listening "):
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    try:
        yield EmulatorProcess(process, line.removeprefix("listening "))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        process.stdout.close()


def rate_limited(stats: dict[str, Any]) -> int:
    return int(sum(stats["rate_limited"].values()))


def api_requests(stats: dict[str, Any]) -> int:
    """Requests to the API endpoints (the control endpoints are not counted by the emulator)."""
    return int(stats["requests_total"])


# -- inputs ----------------------------------------------------------------------------------


def texts(n: int, tag: str) -> list[str]:
    """``n`` distinct texts; ``tag`` keeps runs in one emulator from sharing texts."""
    return [f"{tag} document {i}: the quick brown fox jumps over the lazy dog" for i in range(n)]


def write_jsonl(path: Path, items: Sequence[str]) -> Path:
    with path.open("w") as out:
        for text in items:
            out.write(json.dumps({"text": text}) + "\n")
    return path


# -- batch_embed -----------------------------------------------------------------------------


@dataclass
class ClientRun:
    """One client run: its own counters, the emulator's, wall and CPU seconds."""

    name: str
    texts: int
    done: int
    lost: int
    wall: float
    cpu: float
    server: dict[str, Any]
    client: dict[str, Any] = field(default_factory=dict)
    series: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        s = self.server
        requests = api_requests(s)
        throttled = rate_limited(s)
        done = max(self.done, 1)
        return {
            "client": self.name,
            "texts": self.texts,
            "embedded": self.done,
            "lost": self.lost,
            "wall_s": round(self.wall, 2),
            "texts_per_s": round(self.done / self.wall, 1) if self.wall else 0.0,
            "requests": requests,
            "requests_per_text": round(requests / done, 3),
            "submits_per_text": round(s["submits_accepted"] / done, 3),
            "polls_per_text": round(s["polls"] / done, 3),
            "fetches_per_text": round(s["result_fetches"] / done, 3),
            "jobs_created": s["jobs_created"],
            "rate_limited_429": throttled,
            "share_429": round(throttled / requests, 4) if requests else 0.0,
            "cpu_ms_per_text": round(self.cpu / done * 1000, 3),
        }


class Sampler:
    """Samples the emulator's counters every ``interval`` seconds in a thread."""

    def __init__(self, emu: EmulatorProcess, interval: float = 0.5) -> None:
        self.emu = emu
        self.interval = interval
        self.series: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.series.append((time.monotonic() - self.start, self.emu.stats()))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.series.append((time.monotonic() - self.start, self.emu.stats()))


def run_child(cmd: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` (a ``--quiet`` CLI run) as a child: its exit code, wall time and peak RSS
    (``ru_maxrss`` from ``os.wait4``, the child alone), and its stderr's tail when it failed."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "exit": code,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }
    if child.stderr is not None:
        tail = child.stderr.read().decode()[-400:]
        child.stderr.close()
        if code != 0:
            result["stderr"] = tail
    return result


def run_batch_embed(
    emu: EmulatorProcess,
    items: Sequence[str],
    *,
    rpm: float,
    read_rate: float,
    max_in_flight: int = 512,
    shared_limit: bool = False,
    model: str = SLUG,
    sample: bool = False,
    profile: Path | None = None,
) -> ClientRun:
    """Embed ``items`` in this process with ``embed()`` on the CLI's event loop (uvloop where
    installed); the emulator counts the requests."""
    from batch_embed.config import RunConfig
    from batch_embed.loop import run
    from batch_embed.pipeline import embed

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        source = write_jsonl(Path(tmp) / "in.jsonl", items)
        config = RunConfig(
            inputs=(str(source),),
            output=Path(tmp) / "out",
            base_url=emu.url,
            api_key="bench",
            model=model,
            rpm=rpm,
            read_rate=read_rate,
            max_in_flight=max_in_flight,
            shared_limit=shared_limit,
            allow_insecure_http=True,
        )
        emu.reset()
        sampler = Sampler(emu) if sample else None
        if sampler:
            sampler.__enter__()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(run, embed(config))
            profiler.dump_stats(profile)
        else:
            result = run(embed(config))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if sampler:
            sampler.__exit__()
        server = emu.stats()
    stats = result.stats
    return ClientRun(
        name="batch_embed",
        texts=len(items),
        done=stats.rows_embedded,
        lost=len(items) - stats.rows_embedded,
        wall=wall,
        cpu=cpu,
        server=server,
        client={"outcome": result.outcome.value, **stats.as_dict()},
        series=sampler.series if sampler else [],
    )


# -- the official SDK, used the natural way ---------------------------------------------------


def run_sdk(
    emu: EmulatorProcess, items: Sequence[str], *, threads: int, interval: float = 1.0
) -> ClientRun:
    """A thread pool, each thread ``submit_async(...).wait(interval)`` then decodes the vector."""
    from segmind import SegmindClient

    client = SegmindClient(api_key="bench", base_url=emu.url + "/v1")
    errors: dict[str, int] = {}

    def one(text: str) -> bool:
        try:
            body = client.submit_async(SLUG, prompt=text).wait(interval=interval)
            output = body["output"]
            if isinstance(output, str):
                output = json.loads(output)
            vector = list(output["data"][0]["embedding"])
            return len(vector) > 0
        except Exception as err:  # the natural way: a failed text is a lost text
            name = type(err).__name__
            errors[name] = errors.get(name, 0) + 1
            return False

    emu.reset()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        done = sum(pool.map(one, items))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    client._client.close()
    return ClientRun(
        name=f"SDK {threads} threads",
        texts=len(items),
        done=done,
        lost=len(items) - done,
        wall=wall,
        cpu=cpu,
        server=emu.stats(),
        client={"errors": errors, "interval": interval},
    )


# -- output ----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(fmt(row.get(c)).rjust(w) for c, w in zip(columns, widths, strict=True)))


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_results(name: str, report: dict[str, Any]) -> Path:
    """Write ``results/<name>.json``; a ``--quick`` run writes ``results/quick/`` instead, so
    it never replaces the full figures the README quotes."""
    folder = RESULTS / "quick" if "--quick" in sys.argv[1:] else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"benchmark": name, **machine(), **report}, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
