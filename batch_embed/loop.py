"""The event loop a run goes on: uvloop's where it is installed, asyncio's otherwise.

A run spends most of its CPU on the event loop and aiohttp's protocol callbacks; uvloop
(libuv) runs the same run with about 10% less CPU per text (``benchmarks/client_cost.py``).
Its clock ticks in milliseconds, as do the pacing ticks of :mod:`batch_embed.ratelimit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) where it is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` on the fastest loop available (SIGINT still cancels ``main``)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
