"""The progress view on stderr: a live line on a terminal, a log line every minute otherwise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow.parquet as pq

from .inputs import InputFile
from .log import Log
from .ratelimit import AdaptiveLimiter
from .stats import RunStats


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


DEFAULT_LOG_EVERY = 60.0
"""Seconds between progress lines when stderr is not a terminal (``--log-every``)."""
REDRAW_SECONDS = 0.5


class Progress:
    """Reports a run's counters until cancelled.

    On a terminal (text format) the line is redrawn in place twice a second; otherwise
    (cron, a pipe, a file, or ``--log-format json``) one line is written every
    ``log_every`` seconds, never a carriage return. Clock and sleep are injected.
    """

    def __init__(
        self,
        stats: RunStats,
        submit: AdaptiveLimiter,
        *,
        log: Log,
        expected_rows: int | None = None,
        log_every: float = DEFAULT_LOG_EVERY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.stats = stats
        self.submit = submit
        self.log = log
        self.tty = log.redraws
        self.interval = REDRAW_SECONDS if self.tty else log_every
        self.expected_rows = expected_rows
        self.clock = clock
        self.sleep = sleep
        self._last = (clock(), 0)

    def figures(self) -> dict[str, Any]:
        """The counters of one progress line (the JSON line's fields)."""
        s = self.stats
        now = self.clock()
        then, submits_then = self._last
        rate = (s.submits - submits_then) / (now - then) if now > then else 0.0
        self._last = (now, s.submits)
        done = s.rows_received + s.rows_failed + s.rows_skipped
        elapsed = now - s.started
        eta: float | None = None
        if self.expected_rows and done and elapsed > 0:
            eta = max(0, self.expected_rows - done) * elapsed / done
        return {
            "rows_done": done,
            "rows_total": self.expected_rows,
            "rows_embedded": s.rows_received,
            "rows_committed": s.rows_embedded,
            "rows_failed": s.rows_failed,
            "rows_skipped": s.rows_skipped,
            "paid_calls": s.submits_accepted,
            "in_flight": s.in_flight,
            "submits_per_minute": round(rate * 60, 1),
            "budget_per_minute": round(self.submit.controller.rate * 60, 1),
            "throttled_429": s.throttled_submits + s.throttled_reads,
            "elapsed_seconds": round(elapsed, 1),
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def line(self) -> str:
        """One status line: rows done/total, paid calls, in flight, rate, ETA, 429s."""
        return _text(self.figures())

    async def run(self) -> None:
        """Write the line periodically until cancelled; then end the terminal line."""
        try:
            while True:
                await self.sleep(self.interval)
                self.emit()
        finally:
            if self.tty:
                self.log.stream.write("\n")
                self.log.stream.flush()

    def emit(self) -> None:
        """Write one progress line now."""
        if self.tty:
            self.log.stream.write("\r\x1b[2K" + self.line())
            self.log.stream.flush()
            return
        figures = self.figures()
        self.log.info(_text(figures), event="progress", **figures)


def _text(f: dict[str, Any]) -> str:
    total = f"/{f['rows_total']}" if f["rows_total"] else ""
    eta = "?" if f["eta_seconds"] is None else _clock(f["eta_seconds"])
    return (
        f"rows {f['rows_done']}{total} done ({f['rows_embedded']} embedded, "
        f"{f['rows_committed']} committed, {f['rows_failed']} failed, "
        f"{f['rows_skipped']} skipped) | paid calls {f['paid_calls']} | in flight "
        f"{f['in_flight']} | submits {f['submits_per_minute']:.0f}/min of "
        f"{f['budget_per_minute']:.0f}/min | 429s {f['throttled_429']}"
        f" | {_clock(f['elapsed_seconds'])} elapsed, ETA {eta}"
    )


def estimate_rows(files: list[InputFile]) -> int | None:
    """Rows the inputs hold, for the ETA: exact for Parquet, estimated for plain JSONL.

    A JSONL file's count is its size over the mean line length of its first megabyte;
    compressed files make the estimate unknown (None).
    """
    total = 0
    for file in files:
        if file.format == "parquet":
            total += pq.read_metadata(file.parquet()).num_rows
            continue
        if file.compressed:
            return None
        size = file.size()
        with file.open() as handle:
            head = handle.read(1 << 20)
        lines = head.count(b"\n") or 1
        total += round(size / (len(head) / lines)) if head else 0
    return total
