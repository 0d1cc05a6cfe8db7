"""SIGINT and SIGTERM as one clean "interrupted": the wrapper every entry into the CLI uses.

asyncio's runner turns SIGINT into a clean cancel of the run; SIGTERM is made to act the
same. Light on purpose (no heavy imports): :mod:`batch_embed.entry` uses it before the CLI's
modules have loaded, :mod:`batch_embed.cli` around the run itself.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 5

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers


def interruptible(run: Callable[[], int]) -> int:
    """Call ``run`` with SIGTERM acting as SIGINT (asyncio.run turns either into a clean
    cancel); an interrupt that still escapes ends as a one-line "interrupted", exit 5."""
    previous = _sigterm_as_sigint()
    try:
        return run()
    except KeyboardInterrupt:
        print("\nbatch-embed: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_sigint() -> Handler | None:
    """Make SIGTERM raise SIGINT; return the old handler, or None when this is not the main
    thread (signals are then left alone)."""

    def forward(signum: int, frame: FrameType | None) -> None:
        signal.raise_signal(signal.SIGINT)

    try:
        previous = signal.signal(signal.SIGTERM, forward)
    except ValueError:
        return None
    return signal.SIG_DFL if previous is None else previous
