"""The emulator over real loopback HTTP: protocol, status codes, markers, faults, counters.

Job states, expiry and limits run on a fake clock, so nothing here sleeps for long.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from emulator_fixtures import (
    LARGE,
    SMALL,
    FakeClock,
    api_session,
    get,
    output_vector,
    submit,
)

from batch_embed.emulator import (
    BLOCKED_ERROR,
    OUTPUT_SHAPES,
    Emulator,
    EmulatorConfig,
    expected_vector,
)
from batch_embed.emulator.vectors import count_tokens
from batch_embed.models import MODELS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emulator(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(latency=(1.0, 1.0), seed=7), clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


async def post(
    session: aiohttp.ClientSession, url: str, payload: Any
) -> tuple[int, Any, Mapping[str, str]]:
    """POST JSON (or raw bytes); return status, parsed body and headers."""
    kwargs: dict[str, Any] = {"data": payload} if isinstance(payload, bytes) else {"json": payload}
    async with session.post(url, **kwargs) as response:
        return response.status, orjson.loads(await response.read()), response.headers


# --- the protocol ------------------------------------------------------------------------


async def test_submit_answers_queued_with_absolute_urls(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    body = await submit(http, emulator.url, "hello")
    request_id = body["request_id"]
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{emulator.url}/v2/requests/{request_id}/status"
    assert body["response_url"] == f"{emulator.url}/v2/requests/{request_id}"
    assert body["poll_url"] == f"{emulator.url}/v1/requests/{request_id}"


async def test_urls_follow_the_request_host(emulator: Emulator) -> None:
    async with api_session() as session:
        url = f"{emulator.url}/v2/{LARGE}"
        headers = {"Host": "api.example.test:8443"}
        async with session.post(url, json={"prompt": "x"}, headers=headers) as response:
            body = await response.json()
    assert body["status_url"].startswith("http://api.example.test:8443/v2/requests/")


async def test_job_goes_queued_processing_completed(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "progress")
    states = []
    for step in (0.0, 0.125, 0.25, 0.375, 0.25):  # t = 0, 0.125, 0.375, 0.75, 1.0 (exact)
        clock.advance(step)
        status, light = await get(http, body["status_url"])
        assert status == 200
        assert "output" not in light
        assert light["request_id"] == body["request_id"]
        assert isinstance(light["metrics"], dict)
        states.append(light["status"])
    assert states == ["QUEUED", "QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"]


async def test_result_before_completion_is_the_light_body(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "early")
    status, early = await get(http, body["response_url"])
    assert (status, early["status"]) == (200, "QUEUED")
    assert "output" not in early
    clock.advance(1.0)
    status, final = await get(http, body["response_url"])
    assert (status, final["status"]) == (200, "COMPLETED")
    assert final["request_id"] == body["request_id"]
    assert final["metrics"]["inference_time"] == pytest.approx(0.75)
    assert np.array_equal(output_vector(final["output"]), expected_vector("early", 3072))


async def test_poll_url_answers_like_status(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "old poll")
    clock.advance(1.0)
    status, polled = await get(http, body["poll_url"])
    assert (status, polled["status"]) == (200, "COMPLETED")
    assert "output" not in polled


async def test_default_output_is_openai_json_in_a_string(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    text = "The quick brown fox <|endoftext|> jumps"
    body = await submit(http, emulator.url, text, slug=SMALL)
    clock.advance(1.0)
    _, final = await get(http, body["response_url"])
    assert isinstance(final["output"], str)
    output = orjson.loads(final["output"])
    tokens = count_tokens(text)
    assert output["object"] == "list"
    assert output["model"] == SMALL
    assert output["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert output["data"][0]["object"] == "embedding"
    assert output["data"][0]["index"] == 0
    assert len(output["data"][0]["embedding"]) == MODELS[SMALL].dim == 1536


async def test_every_row_carries_its_own_vector_bit_exact(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    texts = [f"text {i} ünïcödé 🚀 {'x' * i}" for i in range(40)] + ["a", " ", "\n\t"]
    bodies = [await submit(http, emulator.url, text) for text in texts]
    clock.advance(1.0)
    for text, body in zip(texts, bodies, strict=True):
        _, final = await get(http, body["response_url"])
        floats = orjson.loads(final["output"])["data"][0]["embedding"]
        vector = np.asarray(floats, dtype=np.float32)
        assert np.array_equal(vector, expected_vector(text, 3072)), text


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
async def test_output_shapes(
    shape: str, emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(output_shape=shape)
    body = await submit(http, emulator.url, f"shape {shape}")
    clock.advance(1.0)
    _, final = await get(http, body["response_url"])
    output = final["output"]
    expected_type = {
        "openai-string": str,
        "openai-object": dict,
        "list": list,
        "embedding": dict,
        "embeddings": dict,
        "data": dict,
    }[shape]
    assert type(output) is expected_type
    if shape == "embedding":
        assert set(output) == {"embedding"}
    elif shape == "embeddings":
        assert set(output) == {"embeddings"} and len(output["embeddings"]) == 1
    elif shape == "data":
        assert set(output) == {"data"} and isinstance(output["data"][0], list)
    assert np.array_equal(output_vector(output), expected_vector(f"shape {shape}", 3072))


async def test_bad_output_markers(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    kinds = ("nan", "zeros", "short", "garbage")
    bodies = {kind: await submit(http, emulator.url, f"x [[bad-output:{kind}]]") for kind in kinds}
    clock.advance(1.0)
    outputs = {}
    for kind, body in bodies.items():
        status, final = await get(http, body["response_url"])
        assert (status, final["status"]) == (200, "COMPLETED")
        outputs[kind] = final["output"]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(outputs["nan"])
    nan_floats = json.loads(outputs["nan"])["data"][0]["embedding"]
    assert len(nan_floats) == 3072 and math.isnan(nan_floats[0])
    assert not np.any(output_vector(outputs["zeros"]))
    assert len(output_vector(outputs["zeros"])) == 3072
    short = output_vector(outputs["short"])
    assert len(short) == 1536
    assert np.array_equal(short, expected_vector("x [[bad-output:short]]", 3072)[:1536])
    garbage = orjson.loads(outputs["garbage"])
    assert isinstance(garbage, dict)
    assert not {"object", "data", "embedding", "embeddings"} & set(garbage)


async def test_blocked_marker_fails_with_422_on_status_and_result(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "something bad [[blocked]]")
    status, early = await get(http, body["status_url"])
    assert (status, early["status"]) == (200, "QUEUED")
    clock.advance(1.0)
    expected = {"status": "FAILED", "request_id": body["request_id"], "error": BLOCKED_ERROR}
    for url in (body["status_url"], body["response_url"]):
        status, failed = await get(http, url)
        assert status == 422
        assert failed == expected
    assert "blocked" in BLOCKED_ERROR.lower()


async def test_slow_marker_sets_the_exact_latency(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "take your time [[slow:5.5]]")
    clock.advance(5.25)
    _, light = await get(http, body["status_url"])
    assert light["status"] == "PROCESSING"
    clock.advance(0.25)
    _, light = await get(http, body["status_url"])
    assert light["status"] == "COMPLETED"


@pytest.mark.parametrize("code", [500, 503, 403, 429])
async def test_fail_submit_marker_answers_that_code_without_a_job(
    code: int, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(
        http, f"{emulator.url}/v2/{LARGE}", {"prompt": f"[[fail-submit:{code}]] hi"}
    )
    assert status == code
    assert isinstance(body["error"], str)
    stats = emulator.stats()
    assert stats["jobs_created"] == 0
    assert stats["credits_spent"] == 0


# --- 400 / 401 / 404 / 406 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "prompt"),
        ({"text": "wrong field"}, "prompt"),
        ({"prompt": ""}, "empty"),
        ({"prompt": 123}, "string"),
        ({"prompt": None}, "string"),
        ({"prompt": ["a", "b"]}, "string"),
        (["prompt"], "object"),
        (b"{not json", "JSON"),
        ({"prompt": "hello " * 9000}, "8191"),
    ],
)
async def test_bad_submits_answer_400(
    payload: Any, needle: str, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    for endpoint in ("v2", "v1"):
        status, body, _ = await post(http, f"{emulator.url}/{endpoint}/{LARGE}", payload)
        assert status == 400
        assert needle in body["error"]
    assert emulator.stats()["jobs_created"] == 0


async def test_long_bytes_but_few_tokens_is_accepted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    text = " the" * 3000  # 12,000 bytes, 3,000 tokens
    assert len(text.encode()) > 8191 and count_tokens(text) <= 8191
    await submit(http, emulator.url, text)


async def test_text_field_follows_the_model(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.url}/v2/gemini-embedding-001"
    status, body, _ = await post(http, url, {"prompt": "hi"})
    assert status == 400 and "'input'" in body["error"]
    status, body, _ = await post(http, url, {"input": "hi"})
    assert status == 200 and body["status"] == "QUEUED"


async def test_missing_or_wrong_key_answers_401(emulator: Emulator) -> None:
    url = f"{emulator.url}/v2/{LARGE}"
    for key in (None, ""):
        async with api_session(key) as session:
            status, body, _ = await post(session, url, {"prompt": "hi"})
            assert status == 401 and "key" in body["error"]
    async with api_session("any-key-works") as session:
        assert (await post(session, url, {"prompt": "hi"}))[0] == 200
    emulator.update(api_key="the-right-key")
    async with api_session("any-key-works") as session:
        status, body, _ = await post(session, url, {"prompt": "hi"})
        assert status == 401 and "invalid" in body["error"].lower()
        status, body = await get(session, f"{emulator.url}/v1/get-user-credits")
        assert status == 401 and "invalid" in body["error"].lower()
    async with api_session("the-right-key") as session:
        assert (await post(session, url, {"prompt": "hi"}))[0] == 200


async def test_unknown_slug_id_and_path_answer_404(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(http, f"{emulator.url}/v2/no-such-model", {"prompt": "hi"})
    assert status == 404 and "no-such-model" in body["error"]
    status, body, _ = await post(http, f"{emulator.url}/v1/no-such-model", {"prompt": "hi"})
    assert status == 404
    for path in ("/v2/requests/nope/status", "/v2/requests/nope", "/v1/requests/nope"):
        status, body = await get(http, emulator.url + path)
        assert status == 404 and "nope" in body["error"]
    status, body = await get(http, emulator.url + "/v3/whatever")
    assert status == 404 and isinstance(body["error"], str)


async def test_retention_counts_from_submission(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = await submit(http, emulator.url, "short lived")
    clock.advance(3599.5)
    assert (await get(http, body["status_url"]))[0] == 200
    assert (await get(http, body["response_url"]))[0] == 200
    clock.advance(0.5)
    for url in (body["status_url"], body["response_url"], body["poll_url"]):
        status, gone = await get(http, url)
        assert status == 404 and "error" in gone


async def test_retention_is_configurable_and_jobs_are_forgotten(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(retention=10.0)
    first = await submit(http, emulator.url, "first")
    clock.advance(10.0)
    await submit(http, emulator.url, "second")
    assert (await get(http, first["status_url"]))[0] == 404
    assert emulator.stats()["stored_jobs"] == 1


async def test_result_ttl_removes_the_body_but_not_the_status(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(result_ttl=360.0)
    body = await submit(http, emulator.url, "big body")
    clock.advance(1.0 + 359.5)
    assert (await get(http, body["response_url"]))[0] == 200
    clock.advance(0.5)
    status, gone = await get(http, body["response_url"])
    assert status == 404 and "error" in gone
    status, light = await get(http, body["status_url"])
    assert (status, light["status"]) == (200, "COMPLETED")


async def test_credits_run_out_with_406(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    emulator.update(credits=0.002, free_credits=0.001, price=0.001)
    credits_url = f"{emulator.url}/v1/get-user-credits"
    assert await get(http, credits_url) == (200, {"credits": 0.002, "free-credits": 0.001})
    await submit(http, emulator.url, "one")
    assert await get(http, credits_url) == (200, {"credits": 0.002, "free-credits": 0.0})
    await submit(http, emulator.url, "two")
    await submit(http, emulator.url, "three")
    status, body, _ = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "four"})
    assert status == 406 and "credit" in body["error"].lower()
    status, body, _ = await post(http, f"{emulator.url}/v1/{LARGE}", {"prompt": "four"})
    assert status == 406
    assert await get(http, credits_url) == (200, {"credits": 0.0, "free-credits": 0.0})
    stats = emulator.stats()
    assert stats["jobs_created"] == 3
    assert stats["credits_spent"] == pytest.approx(0.003)
    emulator.update(credits=1.0)
    await submit(http, emulator.url, "four")


async def test_credits_endpoint_reports_floats(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, f"{emulator.url}/v1/get-user-credits")
    assert status == 200
    assert set(body) == {"credits", "free-credits"}
    assert all(isinstance(value, float) for value in body.values())


# --- 429 ---------------------------------------------------------------------------------


async def test_submit_limit_with_exact_retry_after(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(submit_limit="2/min", retry_after_rate=1.0, retry_after_date_rate=0.0)
    url = f"{emulator.url}/v2/{LARGE}"
    await submit(http, emulator.url, "a")
    clock.advance(10.0)
    await submit(http, emulator.url, "b")
    clock.advance(0.5)
    for _ in range(3):  # a 429 does not consume budget, and the wait stays exact
        status, body, headers = await post(http, url, {"prompt": "c"})
        assert status == 429 and "rate limit" in body["error"].lower()
        assert headers["Retry-After"] == "50"  # the slot of "a" frees at t=60; now t=10.5
    status, _ = await get(http, f"{emulator.url}/v1/get-user-credits")
    assert status == 200  # reads and the credits check are not submits
    clock.advance(49.5)
    await submit(http, emulator.url, "c")
    status, _, headers = await post(http, url, {"prompt": "d"})
    assert status == 429 and headers["Retry-After"] == "10"
    assert emulator.stats()["rate_limited"] == {"submit": 4, "read": 0, "shared": 0}
    assert emulator.stats()["requests"]["submit"] == {"200": 3, "429": 4}


async def test_retry_after_is_sometimes_absent(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.update(submit_limit="1/s", retry_after_rate=0.0)
    await submit(http, emulator.url, "a")
    status, _, headers = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "b"})
    assert status == 429 and "Retry-After" not in headers
    emulator.update(retry_after_rate=0.5, seed=3)
    seen = set()
    for _ in range(40):
        _, _, headers = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "b"})
        seen.add("Retry-After" in headers)
    assert seen == {True, False}


async def test_retry_after_as_http_date(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(submit_limit="1/min", retry_after_rate=1.0, retry_after_date_rate=1.0)
    await submit(http, emulator.url, "a")
    clock.advance(15.0)
    before = time.time()
    status, _, headers = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "b"})
    assert status == 429
    date = parsedate_to_datetime(headers["Retry-After"]).timestamp()
    assert before + 45 <= date <= time.time() + 46


async def test_read_limit_counts_status_and_result(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(read_limit="3/s", retry_after_rate=1.0, retry_after_date_rate=0.0)
    body = await submit(http, emulator.url, "read me")
    for url in (body["status_url"], body["response_url"], body["status_url"]):
        assert (await get(http, url))[0] == 200
    for url in (body["status_url"], body["response_url"], body["poll_url"]):
        async with http.get(url) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
    await submit(http, emulator.url, "submits are not reads")
    clock.advance(1.0)
    assert (await get(http, body["response_url"]))[0] == 200
    assert emulator.stats()["rate_limited"] == {"submit": 0, "read": 3, "shared": 0}


async def test_shared_limit_counts_every_api_request(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(shared_limit="3/min", submit_limit="10/min", read_limit="10/min")
    body = await submit(http, emulator.url, "shared")
    assert (await get(http, body["status_url"]))[0] == 200
    assert (await get(http, f"{emulator.url}/v1/get-user-credits"))[0] == 200
    assert (await get(http, body["response_url"]))[0] == 429
    assert (await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "x"}))[0] == 429
    assert (await get(http, f"{emulator.url}/v1/get-user-credits"))[0] == 429
    assert emulator.stats()["rate_limited"] == {"submit": 0, "read": 0, "shared": 3}
    clock.advance(60.0)
    assert (await get(http, body["response_url"]))[0] == 200


# --- random faults -----------------------------------------------------------------------


async def test_error_rate_injects_json_and_html_5xx(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.update(error_rate=1.0, html_error_rate=1.0)
    async with http.post(f"{emulator.url}/v2/{LARGE}", json={"prompt": "x"}) as response:
        assert response.status in (500, 502, 504)
        assert response.content_type == "text/html"
        page = await response.text()
    assert page.startswith("<html>") and f"<h1>{response.status} " in page
    emulator.update(html_error_rate=0.0)
    statuses = set()
    for _ in range(30):
        status, body = await get(http, f"{emulator.url}/v2/requests/any/status")
        statuses.add(status)
        assert isinstance(body["error"], str)
    assert statuses == {500, 502, 504}
    stats = emulator.stats()
    assert stats["faults"]["error"] == 31 and stats["faults"]["error_html"] == 1
    assert stats["jobs_created"] == 0


async def test_drop_rate_closes_the_connection_without_an_answer(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.update(drop_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "x"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(http, f"{emulator.url}/v1/get-user-credits")
    stats = emulator.stats()
    assert stats["requests"]["submit"] == {"dropped": 1}
    # aiohttp silently retries an idempotent GET once after a disconnect: both were dropped.
    assert stats["requests"]["credits"] == {"dropped": 2}
    assert stats["faults"]["drop"] == 3
    assert stats["jobs_created"] == 0
    emulator.update(drop_rate=0.0)
    await submit(http, emulator.url, "the server lives on")


async def test_lost_submit_creates_and_bills_the_job(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.update(lost_submit_rate=1.0, html_error_rate=0.0)
    outcomes = set()
    for _ in range(12):
        try:
            status, _, _ = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "same"})
            outcomes.add(status)
        except aiohttp.ServerDisconnectedError:
            outcomes.add("dropped")
    assert outcomes == {502, "dropped"}
    stats = emulator.stats()
    assert stats["jobs_created"] == 12
    assert stats["submits_accepted"] == 0
    assert stats["faults"]["lost_submit"] == 12
    assert stats["stored_jobs"] == 12 and stats["unfinished_jobs"] == 12
    assert stats["credits_spent"] == pytest.approx(0.012)
    assert stats["max_submits_per_text"] == 12
    assert stats["texts_submitted_more_than_once"] == 1


async def test_fail_rate_fails_jobs(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(fail_rate=1.0)
    body = await submit(http, emulator.url, "innocent")
    clock.advance(1.0)
    status, failed = await get(http, body["status_url"])
    assert (status, failed["status"], failed["error"]) == (422, "FAILED", BLOCKED_ERROR)
    assert emulator.stats()["faults"]["fail"] == 1


async def test_cold_start_keeps_the_job_queued(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(cold_start_rate=1.0, cold_start=(10.0, 10.0))
    body = await submit(http, emulator.url, "cold")
    clock.advance(10.125)  # QUEUED until 10 + 1/4
    assert (await get(http, body["status_url"]))[1]["status"] == "QUEUED"
    clock.advance(0.25)
    assert (await get(http, body["status_url"]))[1]["status"] == "PROCESSING"
    clock.advance(0.625)
    assert (await get(http, body["status_url"]))[1]["status"] == "COMPLETED"
    assert emulator.stats()["faults"]["cold_start"] == 1


async def test_latency_is_drawn_from_the_range(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    emulator.update(latency=(0.2, 1.0))
    bodies = [await submit(http, emulator.url, f"t{i}") for i in range(30)]
    clock.advance(0.199)
    for body in bodies:
        assert (await get(http, body["status_url"]))[1]["status"] != "COMPLETED"
    clock.advance(1.0)
    times = []
    for body in bodies:
        _, final = await get(http, body["response_url"])
        assert final["status"] == "COMPLETED"
        times.append(final["metrics"]["inference_time"])
    assert max(times) - min(times) > 0.2  # spread, not one fixed latency


async def test_slow_rate_delays_answers(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    emulator.update(slow_rate=1.0, slow=(0.1, 0.1))
    start = time.perf_counter()
    assert (await get(http, f"{emulator.url}/v1/get-user-credits"))[0] == 200
    assert time.perf_counter() - start >= 0.1
    assert emulator.stats()["faults"]["slow"] == 1


async def test_faults_spare_the_control_endpoints(emulator: Emulator) -> None:
    emulator.update(drop_rate=1.0, error_rate=1.0, api_key="secret", shared_limit="1/min")
    async with api_session(None) as session:
        for _ in range(3):
            status, stats = await get(session, f"{emulator.url}/_emulator/stats")
            assert status == 200 and stats["faults"]["drop"] == 0


# --- counters and control ----------------------------------------------------------------


async def test_stats_count_requests_polls_fetches_and_peak(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    bodies = [await submit(http, emulator.url, f"job {i}") for i in range(5)]
    await submit(http, emulator.url, "job 0")
    for body in bodies[:3]:
        await get(http, body["status_url"])
    clock.advance(2.0)
    await submit(http, emulator.url, "late")
    for body in bodies[:2]:
        await get(http, body["response_url"])
    await get(http, f"{emulator.url}/v2/requests/nope/status")
    status, stats = await get(http, f"{emulator.url}/_emulator/stats")
    assert status == 200
    assert stats == emulator.stats()
    assert stats["requests"]["submit"] == {"200": 7}
    assert stats["requests"]["status"] == {"200": 3, "404": 1}
    assert stats["requests"]["result"] == {"200": 2}
    assert stats["requests_total"] == 13
    assert (stats["polls"], stats["result_fetches"]) == (4, 2)
    assert (stats["submits_accepted"], stats["jobs_created"]) == (7, 7)
    assert stats["distinct_texts"] == 6
    assert stats["max_submits_per_text"] == 2
    assert stats["texts_submitted_more_than_once"] == 1
    assert stats["peak_unfinished_jobs"] == 6
    assert stats["unfinished_jobs"] == 1


async def test_reset_stats_endpoint(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    await submit(http, emulator.url, "counted")
    async with (
        aiohttp.ClientSession() as plain,
        plain.post(f"{emulator.url}/_emulator/reset-stats") as response,
    ):
        assert response.status == 200
    stats = emulator.stats()
    assert stats["jobs_created"] == 0 and stats["requests_total"] == 0
    assert stats["peak_unfinished_jobs"] == 1  # the job still running
    assert stats["stored_jobs"] == 1


async def test_config_endpoint_changes_switches_at_runtime(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.url}/_emulator/config"
    async with aiohttp.ClientSession() as plain:
        status, config, _ = await post(plain, url, {"api_key": "rotated", "latency": "0-0.5"})
        assert status == 200
        assert config["api_key"] == "rotated" and config["latency"] == [0.0, 0.5]
        status, body, _ = await post(plain, url, {"no_such_switch": 1})
        assert status == 400 and "no_such_switch" in body["error"]
        status, body, _ = await post(plain, url, {"drop_rate": 2})
        assert status == 400 and "drop_rate" in body["error"]
        status, body, _ = await post(plain, url, {"submit_limit": "lots"})
        assert status == 400 and "submit_limit" in body["error"]
    assert emulator.config.api_key == "rotated"
    status, _, _ = await post(http, f"{emulator.url}/v2/{LARGE}", {"prompt": "x"})
    assert status == 401


# --- v1 sync -----------------------------------------------------------------------------


async def test_sync_v1_answers_the_output_after_the_latency(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.update(latency=(0.1, 0.1))
    start = time.perf_counter()
    status, output, _ = await post(http, f"{emulator.url}/v1/{LARGE}", {"prompt": "sync me"})
    assert time.perf_counter() - start >= 0.1
    assert status == 200
    assert output["object"] == "list" and output["model"] == LARGE
    assert np.array_equal(output_vector(output), expected_vector("sync me", 3072))
    status, body, _ = await post(http, f"{emulator.url}/v1/{LARGE}", {"prompt": "[[blocked]]"})
    assert (status, body) == (422, {"error": BLOCKED_ERROR})
    stats = emulator.stats()
    assert stats["sync_calls"] == 2 and stats["requests"]["sync"] == {"200": 1, "422": 1}
    assert stats["jobs_created"] == 0


# --- reproducibility ---------------------------------------------------------------------


async def _scripted_run(seed: int) -> list[Any]:
    """Submit 25 texts, then poll every job, one connection each; record what happened."""
    config = EmulatorConfig(
        seed=seed,
        latency=(0.2, 1.0),
        error_rate=0.3,
        drop_rate=0.1,
        fail_rate=0.3,
        cold_start_rate=0.2,
        html_error_rate=0.5,
    )
    clock = FakeClock()
    outcomes: list[Any] = []
    request_ids: list[str] = []

    async def exchange(method: str, url: str, payload: Any = None) -> None:
        async with api_session() as session:
            try:
                async with session.request(method, url, json=payload) as response:
                    body = await response.read()
            except aiohttp.ServerDisconnectedError:
                outcomes.append("dropped")
                return
        if response.status == 200 and method == "POST":
            request_ids.append(orjson.loads(body)["request_id"])
            body = b""
        outcomes.append((response.status, body))

    async with Emulator(config, clock=clock) as emulator:
        for i in range(25):
            await exchange("POST", f"{emulator.url}/v2/{LARGE}", {"prompt": f"text {i}"})
        clock.advance(100.0)
        for request_id in request_ids:
            await exchange("GET", f"{emulator.url}/v2/requests/{request_id}/status")
    return [*outcomes, request_ids]


async def test_seed_makes_runs_reproducible() -> None:
    first = await _scripted_run(42)
    assert first == await _scripted_run(42)
    assert first != await _scripted_run(43)
    kinds = {item if isinstance(item, str) else item[0] for item in first[:-1]}
    assert {"dropped", 200} <= kinds and kinds & {500, 502, 504}


async def test_concurrent_submits_are_all_served(
    emulator: Emulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    bodies = await asyncio.gather(*(submit(http, emulator.url, f"c{i}") for i in range(200)))
    assert len({body["request_id"] for body in bodies}) == 200
    assert emulator.stats()["peak_unfinished_jobs"] == 200
