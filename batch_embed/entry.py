"""The ``batch-embed`` command's entry point: signals first, then the heavy imports.

Importing the CLI loads numpy, pyarrow and aiohttp (about a quarter of a second). A signal
in that window would otherwise stop the process with a traceback (SIGINT), with no word at
all (SIGTERM), or halfway through a module's import. So SIGTERM is made to act as SIGINT,
and both are held back while the CLI loads: one that arrived meanwhile is delivered once
everything is loaded, and ends the process as a clean "interrupted" (exit 5).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

from .interrupts import EXIT_INTERRUPTED, interruptible

__all__ = ["EXIT_INTERRUPTED", "main"]

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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
