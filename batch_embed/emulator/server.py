"""Running the emulator: in the current event loop, or in a background thread.

``Emulator`` is an async context manager for async tests and the CLI; ``EmulatorThread``
runs one in its own thread and loop, for sync code (the official SDK, sync CLIs).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import STATE_KEY, build_app
from .config import EmulatorConfig
from .state import Clock, EmulatorState

_THREAD_START_TIMEOUT_S = 30.0


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Emulator:
    """The emulator served on ``host:port`` (port 0: a free one) in the running loop.

    >>> async with Emulator(EmulatorConfig(latency=(0.0, 0.0))) as emulator:  # doctest: +SKIP
    ...     print(emulator.url)
    http://127.0.0.1:54321
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.app = build_app(EmulatorConfig() if config is None else config, clock=clock)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def state(self) -> EmulatorState:
        """The live state (config, jobs, counters); read it from the loop's thread."""
        return self.app[STATE_KEY]

    @property
    def config(self) -> EmulatorConfig:
        """The switches in force now."""
        return self.state.config

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:54321`` (available once started)."""
        if self._url is None:
            raise RuntimeError("the emulator is not started")
        return self._url

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._url = _format_url(self.host, int(address[1]))

    async def close(self) -> None:
        """Stop serving; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Every counter, as ``GET /_emulator/stats`` serves them."""
        return self.state.snapshot()

    def update(self, **changes: Any) -> EmulatorConfig:
        """Change switches at runtime (validated; see ``EmulatorState.update``)."""
        return self.state.update(changes)

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.state.reset_stats()


class EmulatorThread:
    """An :class:`Emulator` running in a background thread with its own event loop.

    >>> with EmulatorThread(EmulatorConfig(latency=(0.0, 0.0))) as emulator:  # doctest: +SKIP
    ...     segmind.SegmindClient(api_key="k", base_url=emulator.url + "/v1")
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._emulator = Emulator(config, host=host, port=port, clock=clock)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The root URL (available once entered)."""
        return self._emulator.url

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the thread and wait until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the emulator thread is already started")
        self._thread = threading.Thread(target=self._run, name="batch-embed-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_THREAD_START_TIMEOUT_S):
            raise RuntimeError("the emulator thread did not start in time")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError("the emulator failed to start") from self._error

    def close(self) -> None:
        """Stop the server and join the thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to start(); the thread must not die silently
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._emulator:
            self._ready.set()
            await self._stop.wait()

    def _call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` on the emulator's loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the emulator thread is not running")

        async def call() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(_THREAD_START_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        """Every counter, read on the emulator's loop."""
        result: dict[str, Any] = self._call(self._emulator.stats)
        return result

    def update(self, **changes: Any) -> EmulatorConfig:
        """Change switches at runtime, applied on the emulator's loop."""
        result: EmulatorConfig = self._call(lambda: self._emulator.update(**changes))
        return result

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call(self._emulator.reset_stats)

    @property
    def config(self) -> EmulatorConfig:
        """The switches in force now."""
        return self._emulator.config
