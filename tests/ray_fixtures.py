"""Helpers for the Ray tests: a cluster per module, an emulator process, a submit recorder."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import ray


def start_ray() -> None:
    """A local two-CPU Ray for the tests: no dashboard, quiet logs, no progress bars."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
        configure_logging=True,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def stats_at(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_emulator/stats", timeout=10) as answer:
        result: dict[str, Any] = orjson.loads(answer.read())
        return result


@dataclass
class SubmitRecorder:
    """Samples the emulator's accepted submits every ``every`` seconds, on a thread, to
    measure the submit rate over the run's window (first to last accepted submit)."""

    url: str
    every: float = 0.05
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SubmitRecorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), stats_at(self.url)["submits_accepted"]))
            self._stop.wait(self.every)

    def rate(self) -> float:
        """Accepted submits/s between the first sample that saw one and the first that saw
        them all."""
        final = self.samples[-1][1]
        t0, n0 = next((t, n) for t, n in self.samples if n > 0)
        t1 = next(t for t, n in self.samples if n == final)
        return (final - n0) / (t1 - t0)


def collect(ds: ray.data.Dataset) -> pa.Table:
    """Every row of ``ds`` in one table."""
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def iter_rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    yield from table.to_pylist()
