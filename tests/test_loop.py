"""The CLI's event loop: uvloop where it is installed (it is, on Linux, from pyproject.toml),
with asyncio's runner semantics kept (a result comes back, an exception propagates)."""

from __future__ import annotations

import asyncio

import pytest

from batch_embed import loop


def test_runs_on_uvloop_where_installed() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.loop_factory() is not None
    assert loop.run(which()).startswith("uvloop")


def test_a_result_comes_back_and_an_exception_propagates() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.001)
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert loop.run(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        loop.run(fail())
