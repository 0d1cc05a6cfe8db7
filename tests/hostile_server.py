"""A hostile v2 API of the project's own: normal answers, except an absurd one for marked texts.

:class:`HostileServer` runs an ``aiohttp.web`` app on 127.0.0.1 (port 0) in its own thread, so
a test can run the real CLI against it in a subprocess. It speaks the v2 queue API as the
emulator does (submit, status, result, credits; jobs complete at once; the vector is the
emulator's vector of the text). A text containing :data:`MARK` gets the bad answer the server
was started with, on every attempt:

``result-huge``   the result is a 1.5 GB JSON body, streamed in 1 MiB chunks (no length)
``result-gzip``   the result is a ~2 MB gzip body (``Content-Encoding: gzip``) inflating to 2 GB
``submit-huge``   the submit answer is 300 MB (its ``Content-Length`` says so), streamed
``status-huge``   the status answer is 300 MB, streamed in chunks (no length)
``credits-huge``  the credits answer is 300 MB, streamed (for client-level tests)

Streams stop as soon as the client closes the connection; ``bytes_sent`` counts what went out.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import threading
import zlib
from collections import Counter
from functools import lru_cache
from typing import Literal, get_args

import orjson
from aiohttp import web

from batch_embed.emulator.vectors import expected_vector

MARK = "[[hostile]]"
Bad = Literal["result-huge", "result-gzip", "submit-huge", "status-huge", "credits-huge"]
BAD_ANSWERS: tuple[Bad, ...] = get_args(Bad)
MiB = 2**20
HUGE_RESULT = 1536 * MiB
HUGE_ANSWER = 300 * MiB
BOMB_INFLATED = 2048 * MiB
DIM = 3072


@lru_cache(maxsize=4)
def gzip_bomb(inflated: int = BOMB_INFLATED, fill: bytes = b" ") -> bytes:
    """A valid gzip stream of ``inflated`` bytes of ``fill``, built without deflating them all.

    After ``Z_FULL_FLUSH`` the compressor starts afresh, so one 1 MiB block's compressed form
    repeats as is; the stream ends with an empty final block and the gzip trailer (the CRC is
    chained over the blocks). ``inflated`` must be a whole number of MiB.
    """
    assert inflated % MiB == 0 and inflated > 0
    block = fill * MiB
    first = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = first.compress(block) + first.flush(zlib.Z_FULL_FLUSH)
    again = first.compress(block) + first.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated // MiB):
        crc = zlib.crc32(block, crc)
    final_empty_block = b"\x03\x00"
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return head + again * (inflated // MiB - 1) + final_empty_block + trailer


class HostileServer:
    """The hostile API in a thread; ``url`` once entered. Counters: ``submits``, ``texts``."""

    def __init__(self, bad: Bad, *, key: str, dim: int = DIM, chunked: bool = False) -> None:
        assert bad in BAD_ANSWERS, bad
        self.bad = bad
        self.chunked = chunked
        """Send normal results in chunks without a ``Content-Length``."""
        self.key = key
        self.dim = dim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile", daemon=True)
        self.submits: Counter[str] = Counter()
        """Submits received, by text (every one is a paid call)."""
        self.bad_answers = 0
        """Bad answers begun."""
        self.bytes_sent = 0
        """Bytes of bad answers written to the socket before the client hung up."""
        self.wrong_keys = 0
        self.jobs: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> HostileServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/{slug}", self._submit)
        app.router.add_get("/v2/requests/{rid}/status", self._status)
        app.router.add_get("/v2/requests/{rid}", self._result)
        app.router.add_get("/v1/get-user-credits", self._credits)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ---------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if request.headers.get("x-api-key") == self.key:
            return True
        self.wrong_keys += 1
        return False

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "invalid key"}, status=401)
        text = str((await request.json()).get("prompt", ""))
        self.submits[text] += 1
        rid = f"job-{next(self._ids)}"
        self.jobs[rid] = text
        base = f"{self.url}/v2/requests/{rid}"
        body = {
            "status": "QUEUED",
            "request_id": rid,
            "status_url": f"{base}/status",
            "response_url": base,
        }
        if self.bad == "submit-huge" and MARK in text:
            return await self._stream(request, orjson.dumps(body)[:-1], HUGE_ANSWER, length=True)
        return web.json_response(body)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        rid, text = self._job(request)
        body = {"status": "COMPLETED", "request_id": rid, "metrics": {"inference_time": 0.01}}
        if self.bad == "status-huge" and MARK in text:
            return await self._stream(request, orjson.dumps(body)[:-1], HUGE_ANSWER, length=False)
        return web.json_response(body)

    async def _result(self, request: web.Request) -> web.StreamResponse:
        rid, text = self._job(request)
        head = b'{"status":"COMPLETED","request_id":"' + rid.encode() + b'"'
        if MARK in text and self.bad == "result-huge":
            return await self._stream(request, head, HUGE_RESULT, length=False)
        if MARK in text and self.bad == "result-gzip":
            self.bad_answers += 1
            body = gzip_bomb()
            response = web.Response(
                body=body, content_type="application/json", headers={"Content-Encoding": "gzip"}
            )
            self.bytes_sent += len(body)
            return response
        floats = orjson.Fragment(
            orjson.dumps(expected_vector(text, self.dim), option=orjson.OPT_SERIALIZE_NUMPY)
        )
        output = {"object": "list", "data": [{"object": "embedding", "embedding": floats}]}
        body = head + b',"output":' + orjson.dumps(output) + b"}"
        if not self.chunked:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        half = len(body) // 2
        await response.write(body[:half])
        await response.write(body[half:])
        await response.write_eof()
        return response

    async def _credits(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "invalid key"}, status=401)
        if self.bad == "credits-huge":
            return await self._stream(request, b'{"credits":1.0', HUGE_ANSWER, length=False)
        return web.json_response({"credits": 100.0, "free-credits": 0.0})

    def _job(self, request: web.Request) -> tuple[str, str]:
        rid = request.match_info["rid"]
        if not self._authorized(request) or rid not in self.jobs:
            raise web.HTTPNotFound(text='{"error": "request not found"}')
        return rid, self.jobs[rid]

    async def _stream(
        self, request: web.Request, head: bytes, size: int, *, length: bool
    ) -> web.StreamResponse:
        """Answer ``head`` then a JSON string padding up to ``size`` bytes, 1 MiB at a time."""
        self.bad_answers += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if length:
            response.content_length = size
        pad = b"x" * MiB
        try:
            await response.prepare(request)
            sent = len(head) + len(b',"pad":"')
            await response.write(head + b',"pad":"')
            while sent + MiB + 2 <= size:
                await response.write(pad)
                sent += MiB
                self.bytes_sent += MiB
            await response.write(b"x" * (size - sent - 2) + b'"}')
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response
