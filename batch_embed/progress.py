"""The progress view on stderr: a live line on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import pyarrow.parquet as pq

from .inputs import InputFile
from .ratelimit import AdaptiveLimiter
from .stats import RunStats


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Reports a run's counters every ``interval`` seconds until cancelled.

    On a terminal the line is redrawn in place twice a second; when stderr is a file or a
    pipe (cron, CI) a plain line is written every ``log_interval`` seconds instead.
    """

    def __init__(
        self,
        stats: RunStats,
        submit: AdaptiveLimiter,
        *,
        stream: TextIO | None = None,
        expected_rows: int | None = None,
        log_interval: float = 10.0,
    ) -> None:
        self.stats = stats
        self.submit = submit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.5 if self.tty else log_interval
        self.expected_rows = expected_rows
        self._last = (time.monotonic(), 0)

    def line(self) -> str:
        """One status line: rows done/failed, in flight, submit rate against budget, ETA."""
        s = self.stats
        now = time.monotonic()
        then, submits_then = self._last
        rate = (s.submits - submits_then) / (now - then) if now > then else 0.0
        self._last = (now, s.submits)
        budget = self.submit.controller.rate
        done = s.rows_received + s.rows_failed + s.rows_skipped
        elapsed = now - s.started
        eta = "?"
        if self.expected_rows and done and elapsed > 0:
            remaining = max(0, self.expected_rows - done)
            eta = _clock(remaining * elapsed / done)
        return (
            f"rows {s.rows_received} embedded ({s.rows_embedded} committed), "
            f"{s.rows_failed} failed, {s.rows_skipped} skipped"
            f" | in flight {s.in_flight} | submits {rate * 60:.0f}/min of "
            f"{budget * 60:.0f}/min | 429s {s.throttled_submits + s.throttled_reads}"
            f" | {_clock(elapsed)} elapsed, ETA {eta}"
        )

    async def run(self) -> None:
        """Write the line periodically until cancelled; then end the terminal line."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                self._emit()
        finally:
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def _emit(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write("batch-embed: " + self.line() + "\n")
        self.stream.flush()


def estimate_rows(files: list[InputFile]) -> int | None:
    """Rows the inputs hold, for the ETA: exact for Parquet, estimated for plain JSONL.

    A JSONL file's count is its size over the mean line length of its first megabyte;
    compressed files make the estimate unknown (None).
    """
    total = 0
    for file in files:
        if file.format == "parquet":
            total += pq.read_metadata(file.path).num_rows
            continue
        if file.compressed:
            return None
        size = file.path.stat().st_size
        with open(file.path, "rb") as handle:
            head = handle.read(1 << 20)
        lines = head.count(b"\n") or 1
        total += round(size / (len(head) / lines)) if head else 0
    return total
