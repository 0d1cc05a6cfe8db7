"""Helpers shared by the emulator's tests (plain objects; each test module makes fixtures)."""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson

API_KEY = "test-key"
LARGE = "text-embedding-3-large"
SMALL = "text-embedding-3-small"


class FakeClock:
    """A clock that only moves when told to: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def api_session(key: str | None = API_KEY) -> aiohttp.ClientSession:
    """A session sending ``x-api-key`` (none when ``key`` is None)."""
    headers = {} if key is None else {"x-api-key": key}
    return aiohttp.ClientSession(headers=headers)


async def submit(
    session: aiohttp.ClientSession, url: str, text: str, slug: str = LARGE
) -> dict[str, Any]:
    """Submit ``text`` and return the 200 body (fails the test on any other status)."""
    async with session.post(f"{url}/v2/{slug}", json={"prompt": text}) as response:
        body = await response.json()
        assert response.status == 200, (response.status, body)
        return dict(body)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """GET ``url``; return the status and the parsed JSON body."""
    async with session.get(url) as response:
        return response.status, orjson.loads(await response.read())


def output_vector(output: Any) -> npt.NDArray[np.float32]:
    """The vector of an ``output`` in any shape the emulator serves (a string decoded once)."""
    if isinstance(output, str):
        output = orjson.loads(output)
    if isinstance(output, list):
        floats = output
    elif "object" in output:
        floats = output["data"][0]["embedding"]
    elif "embedding" in output:
        floats = output["embedding"]
    elif "embeddings" in output:
        floats = output["embeddings"][0]
    else:
        floats = output["data"][0]
    return np.asarray(floats, dtype=np.float32)
