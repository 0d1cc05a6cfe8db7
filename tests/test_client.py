"""Tests of SegmindClient against the real emulator (port 0) and tiny hostile loopback servers.

Time is controlled where the emulator allows it: job states and retention run on an injected
:class:`FakeClock`, so nothing here sleeps longer than a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web
from emulator_fixtures import FakeClock

from batch_embed import errors
from batch_embed.api_root import is_loopback, normalize_root
from batch_embed.client import (
    API_KEY_ENV,
    Credits,
    SegmindClient,
    Timeouts,
)
from batch_embed.emulator import (
    BLOCKED_ERROR,
    OUTPUT_SHAPES,
    Emulator,
    EmulatorConfig,
    expected_vector,
)
from batch_embed.errors import ConfigError
from batch_embed.records import JobHandle, JobState

KEY = "sk-SECRET-123"
DIM = 3072  # text-embedding-3-large
INSTANT = (0.0, 0.0)


def client_for(url: str, *, key: str = KEY, **kwargs: Any) -> SegmindClient:
    return SegmindClient(api_key=key, base_url=url, **kwargs)


@contextlib.asynccontextmanager
async def emulator(**switches: Any) -> AsyncIterator[Emulator]:
    switches.setdefault("latency", INSTANT)
    switches.setdefault("seed", 7)
    clock = switches.pop("clock", None)
    kwargs = {} if clock is None else {"clock": clock}
    async with Emulator(EmulatorConfig(**switches), **kwargs) as emu:
        yield emu


# -- a tiny hostile server ---------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Tiny:
    """A loopback server answering every request with ``handler``; records what it got."""

    url: str
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[Tiny]:
    tiny = Tiny(url="")

    async def record(request: web.Request) -> web.StreamResponse:
        tiny.seen.append((request.method, request.path_qs, request.headers.get("x-api-key")))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        tiny.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield tiny
    finally:
        await runner.cleanup()


def reply(status: int, body: Any, *, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering ``body`` (bytes/str as is, anything else as JSON) with ``status``."""
    raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else None
    if raw is None:
        raw = orjson.dumps(body)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=raw, headers=headers)

    return handler


def assert_no_key(err: BaseException, key: str = KEY) -> None:
    """Neither the key nor a recognisable part of it appears in the error or its shown chain."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts = [str(current), repr(current), *map(str, current.args)]
        for name in ("detail", "body_excerpt", "request_id"):
            value = getattr(current, name, None)
            if value is not None:
                texts.append(str(value))
        for text in texts:
            for part in (key, key[:8], key[-8:]):
                assert part not in text, (type(current).__name__, text)
        # the chain a traceback shows: __context__ only when not suppressed by ``from None``
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


# -- submit, status, result against the emulator -----------------------------------------------


async def test_submit_returns_absolute_urls_on_the_emulator_origin() -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        before = time.time()
        job = await client.submit("hello world")
    assert isinstance(job, JobHandle)
    assert job.request_id
    assert job.status_url == f"{emu.url}/v2/requests/{job.request_id}/status"
    assert job.response_url == f"{emu.url}/v2/requests/{job.request_id}"
    assert before <= job.submitted_at <= time.time()
    assert emu.stats()["submits_accepted"] == 1


async def test_the_key_travels_in_x_api_key_only_to_the_root() -> None:
    async with emulator(api_key=KEY) as emu, client_for(emu.url) as client:
        job = await client.submit("authorized")
        assert (await client.status(job)).state is JobState.COMPLETED


async def test_status_goes_queued_processing_completed_on_the_emulator_clock() -> None:
    clock = FakeClock()
    async with emulator(clock=clock) as emu, client_for(emu.url) as client:
        job = await client.submit("progress [[slow:1.0]]")
        seen = []
        for _ in range(5):  # QUEUED until +0.25, PROCESSING until +1.0
            seen.append((await client.status(job)).state)
            clock.advance(0.24)
        done = await client.status(job)
    assert seen == [
        JobState.QUEUED,
        JobState.QUEUED,
        JobState.PROCESSING,
        JobState.PROCESSING,
        JobState.PROCESSING,
    ]
    assert done.state is JobState.COMPLETED
    assert done.error is None
    assert done.inference_time == pytest.approx(0.75)


async def test_status_of_a_job_that_is_not_finished_has_no_error() -> None:
    clock = FakeClock()
    async with emulator(clock=clock) as emu, client_for(emu.url) as client:
        job = await client.submit("pending [[slow:5]]")
        status = await client.status(job)
    assert status.state is JobState.QUEUED
    assert status.error is None
    assert status.inference_time is None


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
async def test_result_is_the_expected_vector_bit_exact_for_every_output_shape(shape: str) -> None:
    texts = ["hello world", "ünïcödé ✓ 漢字", "x" * 5000]
    async with emulator(output_shape=shape) as emu, client_for(emu.url) as client:
        jobs = [await client.submit(text) for text in texts]
        vectors = [await client.result(job) for job in jobs]
    for text, vector in zip(texts, vectors, strict=True):
        assert vector.dtype == np.float32
        assert vector.shape == (DIM,)
        assert np.array_equal(vector, expected_vector(text, DIM))


async def test_small_model_gets_its_own_dimension() -> None:
    async with emulator() as emu, client_for(emu.url, model="text-embedding-3-small") as client:
        vector = await client.result(await client.submit("small"))
    assert np.array_equal(vector, expected_vector("small", 1536))


async def test_result_before_completion_is_malformed_not_a_vector() -> None:
    clock = FakeClock()
    async with emulator(clock=clock) as emu, client_for(emu.url) as client:
        job = await client.submit("later [[slow:5]]")
        with pytest.raises(errors.MalformedResponse) as info:
            await client.result(job)
    assert info.value.request_id == job.request_id
    assert "QUEUED" in str(info.value)


# -- HTTP errors from the emulator --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "word " * 9000],
    ids=["empty", "over-long"],
)
async def test_400_bad_request(text: str) -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        with pytest.raises(errors.BadRequest) as info:
            await client.submit(text)
    err = info.value
    assert err.status == 400
    assert err.request_id is None
    assert err.detail is not None and "prompt" in err.detail
    assert emu.stats()["submits_accepted"] == 0


async def test_401_wrong_key() -> None:
    async with emulator(api_key="right") as emu, client_for(emu.url, key="wrong") as client:
        with pytest.raises(errors.AuthError) as info:
            await client.submit("hi")
    assert info.value.status == 401
    assert "wrong" not in str(info.value)
    assert info.value.detail is not None and "invalid API key" in info.value.detail


@pytest.mark.parametrize("call", ["status", "result"])
async def test_404_unknown_request_id(call: str) -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        job = client.handle("nope")
        assert job.status_url == f"{emu.url}/v2/requests/nope/status"
        assert job.response_url == f"{emu.url}/v2/requests/nope"
        with pytest.raises(errors.NotFound) as info:
            await getattr(client, call)(job)
    assert info.value.status == 404
    assert info.value.request_id == "nope"
    assert info.value.retry_after is None


async def test_404_after_retention_on_status_and_result() -> None:
    clock = FakeClock()
    async with emulator(clock=clock, retention=0.3) as emu, client_for(emu.url) as client:
        job = await client.submit("short-lived")
        assert (await client.status(job)).state is JobState.COMPLETED
        clock.advance(0.29)
        assert np.array_equal(await client.result(job), expected_vector("short-lived", DIM))
        clock.advance(0.02)
        for call in (client.status, client.result):
            with pytest.raises(errors.NotFound) as info:
                await call(job)
            assert info.value.request_id == job.request_id


async def test_404_on_result_after_result_ttl_while_status_is_completed() -> None:
    clock = FakeClock()
    async with emulator(clock=clock, result_ttl=0.5) as emu, client_for(emu.url) as client:
        job = await client.submit("fetch me soon")
        clock.advance(0.6)
        assert (await client.status(job)).state is JobState.COMPLETED
        with pytest.raises(errors.NotFound):
            await client.result(job)


async def test_404_after_real_retention() -> None:
    async with emulator(retention=0.3) as emu, client_for(emu.url) as client:
        job = await client.submit("gone soon")
        assert (await client.status(job)).state is JobState.COMPLETED
        await _sleep(0.35)
        with pytest.raises(errors.NotFound):
            await client.status(job)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_406_insufficient_credits() -> None:
    async with emulator(credits=0.0) as emu, client_for(emu.url) as client:
        with pytest.raises(errors.InsufficientCredits) as info:
            await client.submit("no money")
    assert info.value.status == 406


async def test_422_blocked_is_a_failed_status_not_an_error() -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        job = await client.submit("something [[blocked]]")
        status = await client.status(job)
        assert status.state is JobState.FAILED
        assert status.error == BLOCKED_ERROR
        with pytest.raises(errors.JobFailed) as info:
            await client.result(job)
    err = info.value
    assert err.status == 422
    assert err.detail == BLOCKED_ERROR
    assert err.request_id == job.request_id


async def test_429_with_retry_after_seconds() -> None:
    switches = {"submit_limit": "1/min", "retry_after_rate": 1.0, "retry_after_date_rate": 0.0}
    async with emulator(**switches) as emu, client_for(emu.url) as client:
        await client.submit("first")
        with pytest.raises(errors.RateLimited) as info:
            await client.submit("second")
    err = info.value
    assert err.status == 429
    assert err.retry_after is not None
    assert 0 < err.retry_after <= 60


async def test_429_with_retry_after_http_date() -> None:
    switches = {"submit_limit": "1/min", "retry_after_rate": 1.0, "retry_after_date_rate": 1.0}
    async with emulator(**switches) as emu, client_for(emu.url) as client:
        await client.submit("first")
        with pytest.raises(errors.RateLimited) as info:
            await client.submit("second")
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 62


async def test_429_without_retry_after() -> None:
    async with (
        emulator(read_limit="1/min", retry_after_rate=0.0) as emu,
        client_for(emu.url) as client,
    ):
        job = await client.submit("read me")
        await client.status(job)
        with pytest.raises(errors.RateLimited) as info:
            await client.status(job)
    assert info.value.status == 429
    assert info.value.retry_after is None
    assert info.value.request_id == job.request_id


@pytest.mark.parametrize("code", [500, 502, 504])
async def test_5xx_server_errors(code: int) -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        with pytest.raises(errors.ServerError) as info:
            await client.submit(f"boom [[fail-submit:{code}]]")
    assert info.value.status == code
    assert info.value.detail is not None


@pytest.mark.parametrize("code", [403, 409, 418])
async def test_other_statuses_map_to_their_class(code: int) -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        with pytest.raises(errors.HttpError) as info:
            await client.submit(f"odd [[fail-submit:{code}]]")
    assert info.value.status == code
    assert isinstance(info.value, errors.Forbidden) == (code == 403)
    assert not isinstance(info.value, errors.ServerError)


async def test_html_5xx_body_is_a_server_error_with_the_page_start() -> None:
    async with emulator(error_rate=1.0, html_error_rate=1.0) as emu, client_for(emu.url) as client:
        with pytest.raises(errors.ServerError) as info:
            await client.submit("any")
    err = info.value
    assert err.status in (500, 502, 504)
    assert err.detail is None
    assert err.body_excerpt.startswith(f"<html>\r\n<head><title>{err.status} ")
    assert len(err.body_excerpt) <= 200


async def test_html_502_from_a_proxy() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 500 + "</body></html>"
    async with (
        tiny_server(reply(502, page, headers={"Content-Type": "text/html"})) as tiny,
        client_for(tiny.url) as client,
    ):
        with pytest.raises(errors.ServerError) as info:
            await client.submit("hi")
    assert info.value.status == 502
    assert info.value.body_excerpt == page[:200]
    assert "502 Bad Gateway" in str(info.value)


async def test_dropped_connection() -> None:
    async with emulator(drop_rate=1.0) as emu, client_for(emu.url) as client:
        with pytest.raises(errors.ConnectionDropped) as info:
            await client.submit("dropped")
    assert info.value.maybe_sent is True
    assert info.value.status is None


async def test_connection_refused_was_never_sent() -> None:
    async with tiny_server(reply(200, {})) as tiny:
        url = tiny.url
    async with client_for(url) as client:
        with pytest.raises(errors.ConnectionDropped) as info:
            await client.submit("nobody home")
    assert info.value.maybe_sent is False


async def test_timeout_with_the_emulator_slow_switch() -> None:
    switches = {"slow_rate": 1.0, "slow": (0.4, 0.4)}
    async with (
        emulator(**switches) as emu,
        client_for(emu.url, timeouts=Timeouts(total=0.15)) as client,
    ):
        started = time.monotonic()
        with pytest.raises(errors.RequestTimeout) as info:
            await client.submit("slow answer")
        assert time.monotonic() - started < 0.35
    assert info.value.status is None


async def test_read_timeout_against_a_server_that_stalls() -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await _sleep(0.4)
        return web.json_response({"status": "QUEUED"})

    async with tiny_server(stall) as tiny:
        timeouts = Timeouts(total=5.0, read=0.1)
        async with client_for(tiny.url, timeouts=timeouts) as client:
            with pytest.raises(errors.RequestTimeout) as info:
                await client.status(client.handle("r-1"))
    assert info.value.request_id == "r-1"


# -- malformed answers from a tiny server -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"status": "QUEUED"},
        {"request_id": "r1", "status_url": "/v2/requests/r1/status"},
        {"request_id": "", "status_url": "x", "response_url": "y"},
        {"request_id": 5, "status_url": "x", "response_url": "y"},
        {"request_id": "r1", "status_url": None, "response_url": "y"},
    ],
    ids=["no-ids", "no-response_url", "empty-id", "numeric-id", "null-url"],
)
async def test_2xx_submit_without_the_three_ids_is_malformed(body: dict[str, Any]) -> None:
    async with tiny_server(reply(200, body)) as tiny, client_for(tiny.url) as client:
        with pytest.raises(errors.MalformedResponse) as info:
            await client.submit("hi")
    assert not isinstance(info.value, errors.ForeignOrigin)
    assert "request_id" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"not json"), (200, b"[1, 2]"), (200, b""), (201, b'"a string"')],
)
async def test_2xx_whose_body_is_not_a_json_object_is_malformed(status: int, body: bytes) -> None:
    async with tiny_server(reply(status, body)) as tiny, client_for(tiny.url) as client:
        with pytest.raises(errors.MalformedResponse) as info:
            await client.submit("hi")
    assert info.value.status == status


@pytest.mark.parametrize("state", ["DONE", "completed", None, 3])
async def test_unknown_job_state_fails_loudly(state: Any) -> None:
    async with tiny_server(reply(200, {"status": state})) as tiny, client_for(tiny.url) as client:
        with pytest.raises(errors.MalformedResponse) as info:
            await client.status(client.handle("r-9"))
    assert info.value.request_id == "r-9"


async def test_result_without_output_is_a_bad_vector() -> None:
    body = {"status": "COMPLETED", "request_id": "r-1"}
    async with tiny_server(reply(200, body)) as tiny, client_for(tiny.url) as client:
        with pytest.raises(errors.BadVector) as info:
            await client.result(client.handle("r-1"))
    assert info.value.request_id == "r-1"


async def test_a_terminal_body_is_an_answer_whatever_the_http_code() -> None:
    body = {"status": "COMPLETED", "output": expected_vector("t", DIM).tolist()}
    async with tiny_server(reply(500, body)) as tiny, client_for(tiny.url) as client:
        vector = await client.result(client.handle("r-1"))
    assert np.array_equal(vector, expected_vector("t", DIM))


# -- foreign origins: the key never leaves --------------------------------------------------------


def submit_answer(status_url: str, response_url: str) -> dict[str, str]:
    return {
        "request_id": "r-1",
        "status": "QUEUED",
        "status_url": status_url,
        "response_url": response_url,
    }


async def test_foreign_status_url_is_refused_and_never_contacted() -> None:
    async with tiny_server(reply(200, {"status": "COMPLETED"})) as elsewhere:
        for foreign in (
            f"{elsewhere.url}/v2/requests/r-1/status",
            "http://evil.example/v2/requests/r-1/status",
        ):

            async def answer(request: web.Request, foreign: str = foreign) -> web.StreamResponse:
                root = f"http://{request.host}"
                return web.json_response(submit_answer(foreign, f"{root}/v2/requests/r-1"))

            async with tiny_server(answer) as api, client_for(api.url) as client:
                with pytest.raises(errors.ForeignOrigin) as info:
                    await client.submit("hi")
            assert info.value.request_id == "r-1"
            assert len(api.seen) == 1 and api.seen[0][2] == KEY
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    "target",
    [
        "https://{host}/v2/requests/r-1",  # same host, other scheme
        "http://127.0.0.1/v2/requests/r-1",  # same host, default port
        "http://127.0.0.1.evil.example:{port}/v2/requests/r-1",
        "http://{host}@evil.example/v2/requests/r-1",
        "http://evil.example/?{host}",
        "//evil.example/v2/requests/r-1",
        "/v2/requests/r-1",
        "http://127.0.0.1:notaport/v2/requests/r-1",
        "http://[::1/v2/requests/r-1",
        "http://127.0.0.1:99999/v2/requests/r-1",
    ],
)
async def test_foreign_response_url_variants_are_refused(target: str) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        host = request.host
        response_url = target.format(host=host, port=host.rsplit(":", 1)[1])
        return web.json_response(
            submit_answer(f"http://{host}/v2/requests/r-1/status", response_url)
        )

    async with tiny_server(answer) as api, client_for(api.url) as client:
        with pytest.raises(errors.ForeignOrigin):
            await client.submit("hi")
    assert len(api.seen) == 1


@pytest.mark.parametrize("call", ["status", "result"])
async def test_a_handle_pointing_elsewhere_is_never_followed(call: str) -> None:
    async with (
        tiny_server(reply(200, {"status": "COMPLETED"})) as elsewhere,
        emulator() as emu,
        client_for(emu.url) as client,
    ):
        job = JobHandle("r-1", f"{elsewhere.url}/status", f"{elsewhere.url}/result")
        with pytest.raises(errors.ForeignOrigin) as info:
            await getattr(client, call)(job)
    assert info.value.request_id == "r-1"
    assert elsewhere.seen == []


# -- the key never shows --------------------------------------------------------------------------


def echo(status: int, make: Callable[[str], Any], **headers: str) -> Handler:
    """A handler that answers a body built from the key it received."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = make(request.headers.get("x-api-key", ""))
        raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
        return web.Response(status=status, body=raw, headers=headers or None)

    return handler


ECHO_CASES: list[tuple[str, str, int, Callable[[str], Any], type[errors.ApiError]]] = [
    ("json-error", "submit", 500, lambda k: {"error": f"invalid key {k}!"}, errors.ServerError),
    ("html", "submit", 502, lambda k: f"<html><body>key={k}</body></html>", errors.ServerError),
    ("401-text", "submit", 401, lambda k: f"Unauthorized: {k}", errors.AuthError),
    ("429", "submit", 429, lambda k: {"error": f"slow down {k}"}, errors.RateLimited),
    ("at-excerpt-edge", "submit", 400, lambda k: "x" * 190 + k + "y" * 50, errors.BadRequest),
    ("2xx-not-json", "submit", 200, lambda k: f"ok {k}", errors.MalformedResponse),
    ("2xx-no-ids", "submit", 200, lambda k: {"echo": k}, errors.MalformedResponse),
    ("key-as-field-name", "submit", 200, lambda k: {k: 1}, errors.MalformedResponse),
    (
        "foreign-url-with-key",
        "submit",
        200,
        lambda k: submit_answer(f"http://evil.example/?k={k}", "http://evil.example/"),
        errors.ForeignOrigin,
    ),
    ("failed-result", "result", 422, lambda k: {"status": "FAILED", "error": k}, errors.JobFailed),
    ("state-is-key", "status", 200, lambda k: {"status": k}, errors.MalformedResponse),
    (
        "garbage-output",
        "result",
        200,
        lambda k: {"status": "COMPLETED", "output": {"note": f"key {k}"}},
        errors.BadVector,
    ),
    (
        "garbage-output-at-excerpt-edge",
        "result",
        200,
        lambda k: {"status": "COMPLETED", "output": {"n": "x" * 180 + k}},
        errors.BadVector,
    ),
    (
        "nan-output-string-at-edge",
        "result",
        200,
        lambda k: {"status": "COMPLETED", "output": "[NaN" + " " * 183 + f', "{k}"]'},
        errors.BadVector,
    ),
    (
        "garbage-output-string",
        "result",
        200,
        lambda k: {"status": "COMPLETED", "output": f"not json {k}"},
        errors.BadVector,
    ),
    ("credits", "credits", 200, lambda k: {"credits": k}, errors.MalformedResponse),
]


@pytest.mark.parametrize(
    ("call", "status", "make", "expected"),
    [case[1:] for case in ECHO_CASES],
    ids=[case[0] for case in ECHO_CASES],
)
async def test_the_key_is_scrubbed_from_every_error(
    call: str, status: int, make: Callable[[str], Any], expected: type[errors.ApiError]
) -> None:
    async with (
        tiny_server(echo(status, make, **{"Retry-After": "2"})) as tiny,
        client_for(tiny.url) as client,
    ):
        assert KEY not in repr(client) and KEY not in str(client)
        with pytest.raises(errors.ApiError) as info:
            if call == "submit":
                await client.submit("hi")
            elif call == "credits":
                await client.credits()
            else:
                await getattr(client, call)(client.handle("r-1"))
    assert tiny.seen and tiny.seen[0][2] == KEY  # the key did reach the (loopback) root
    assert type(info.value) is expected
    assert_no_key(info.value)


async def test_the_key_is_scrubbed_from_a_failed_status() -> None:
    handler = echo(422, lambda k: {"status": "FAILED", "error": f"bad {k} bad"})
    async with tiny_server(handler) as tiny, client_for(tiny.url) as client:
        status = await client.status(client.handle("r-1"))
    assert status.state is JobState.FAILED
    assert status.error == "bad <secret> bad"
    assert KEY not in repr(status)


async def test_the_key_is_not_in_repr_or_vars() -> None:
    client = client_for("https://api.segmind.com")
    assert KEY not in repr(client)
    assert KEY not in str(client)
    assert KEY not in repr(vars(client) if hasattr(client, "__dict__") else {})


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("https://api.segmind.com", "https://api.segmind.com"),
        ("https://api.segmind.com/", "https://api.segmind.com"),
        ("https://api.segmind.com/v1", "https://api.segmind.com"),
        ("https://api.segmind.com/v1/", "https://api.segmind.com"),
        ("https://api.segmind.com/v2", "https://api.segmind.com"),
        ("  https://api.segmind.com/v2/  ", "https://api.segmind.com"),
        ("https://proxy.example/segmind/v2", "https://proxy.example/segmind"),
        ("https://api.segmind.com:8443", "https://api.segmind.com:8443"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.8.9.10", "http://127.8.9.10"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://LOCALHOST", "http://LOCALHOST"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_normalize_root_accepts(url: str, root: str) -> None:
    assert normalize_root(url) == root


@pytest.mark.parametrize(
    "url",
    [
        "http://api.segmind.com",
        "http://10.0.0.1:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://0x7f000001",
        "http://[::ffff:8.8.8.8]",
    ],
)
def test_plain_http_only_for_loopback(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        normalize_root(url)
    assert normalize_root(url, allow_insecure_http=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "api.segmind.com",
        "ftp://api.segmind.com",
        "file:///etc/passwd",
        "https://",
        "https:///v2",
        "not a url",
        "javascript:alert(1)",
        "https://user:pw@api.segmind.com",
        "https://key@api.segmind.com",
        "https://api.segmind.com?x=1",
        "https://api.segmind.com#frag",
        "https://api.segmind.com:abc",
        "https://api.segmind.com:99999",
        "http://[::1",
        "http://localhost:-1",
    ],
)
def test_normalize_root_rejects_garbage_naming_base_url(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        normalize_root(url, allow_insecure_http=True)
    with pytest.raises(ConfigError, match="base_url"):
        SegmindClient(api_key=KEY, base_url=url)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("128.0.0.1", False),
        ("localhost.", False),
        ("example.com", False),
        ("", False),
        ("0.0.0.0", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("env", [None, ""])
def test_missing_key_names_the_env_variable(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv(API_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(API_KEY_ENV, env)
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        SegmindClient()
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        SegmindClient(api_key="")


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    client = SegmindClient()
    assert client.root == "https://api.segmind.com"
    assert KEY not in repr(client)


def test_bad_settings_name_their_argument() -> None:
    with pytest.raises(ConfigError, match="max_connections"):
        SegmindClient(api_key=KEY, max_connections=0)
    with pytest.raises(ConfigError, match="model"):
        SegmindClient(api_key=KEY, model="no-such-model")


async def test_close_is_idempotent_and_a_closed_client_refuses_work() -> None:
    async with emulator() as emu:
        client = client_for(emu.url)
        with pytest.raises(RuntimeError, match="not open"):
            await client.submit("too early")
        async with client:
            await client.submit("once")
        await client.close()
        await client.close()
        with pytest.raises(RuntimeError):
            await client.submit("after close")
        with pytest.raises(RuntimeError, match="closed"):
            await client.open()
    never_opened = client_for("https://api.segmind.com")
    await never_opened.close()
    await never_opened.close()


async def test_credits_are_floats() -> None:
    async with emulator(credits=5, free_credits=2) as emu, client_for(emu.url) as client:
        credits = await client.credits()
        await client.submit("costs one price")
        after = await client.credits()
    assert credits == Credits(5.0, 2.0)
    assert type(credits.credits) is float and type(credits.free_credits) is float
    assert after.credits + after.free_credits == pytest.approx(7.0 - 0.001)


async def test_unlimited_credits_are_floats() -> None:
    async with emulator() as emu, client_for(emu.url) as client:
        credits = await client.credits()
    assert type(credits.credits) is float and math.isfinite(credits.credits)


@pytest.mark.parametrize(
    "body", [{}, {"credits": None}, {"credits": "lots"}, {"credits": [1]}, {"free-credits": 1.0}]
)
async def test_credits_without_a_number_is_malformed(body: dict[str, Any]) -> None:
    async with tiny_server(reply(200, body)) as tiny, client_for(tiny.url) as client:
        with pytest.raises(errors.MalformedResponse):
            await client.credits()


# -- bad outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
@pytest.mark.parametrize("bad", ["nan", "zeros", "short", "garbage"])
async def test_every_bad_output_marker_is_a_bad_vector(bad: str, shape: str) -> None:
    async with emulator(output_shape=shape) as emu, client_for(emu.url) as client:
        job = await client.submit(f"broken [[bad-output:{bad}]]")
        assert (await client.status(job)).state is JobState.COMPLETED
        with pytest.raises(errors.BadVector) as info:
            await client.result(job)
    err = info.value
    assert err.request_id == job.request_id
    assert len(err.body_excerpt) <= 200
