"""The ``batch-embed`` command's entry point: signals first, then the heavy imports.

Importing the CLI loads numpy, pyarrow and aiohttp (about a quarter of a second). A signal
in that window would otherwise stop the process with a traceback (SIGINT), with no word at
all (SIGTERM), or halfway through a module's import. So SIGTERM is made to act as SIGINT,
and both are held back while the CLI loads: one that arrived meanwhile is delivered once
everything is loaded, and ends the process as a clean "interrupted" (exit 5).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 5
_SIGNALS = {signal.SIGINT, signal.SIGTERM}

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


def _load_cli() -> Callable[[Sequence[str] | None], int]:
    """Import the CLI with SIGINT/SIGTERM held back; one that arrived meanwhile is
    delivered as soon as they are let through again."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        from .cli import main
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Load the CLI with SIGINT/SIGTERM held back, then run it."""
    return interruptible(lambda: _load_cli()(argv))
