"""The official Segmind SDK (segmind==1.3.0) against the emulator: if they disagree, the
emulator is wrong. Sync SDK calls, so the emulator runs in a thread (EmulatorThread)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import segmind
from emulator_fixtures import LARGE, SMALL, output_vector
from segmind.v2 import AsyncJob, InferenceFailed

from batch_embed.emulator import BLOCKED_ERROR, EmulatorConfig, EmulatorThread, expected_vector

KEY = "sdk-key"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    config = EmulatorConfig(api_key=KEY, latency=(0.05, 0.15), seed=11)
    with EmulatorThread(config) as emulator:
        yield emulator


def make_client(emulator: EmulatorThread, key: str | None = KEY) -> segmind.SegmindClient:
    return segmind.SegmindClient(api_key=key, base_url=emulator.url + "/v1")


@pytest.fixture
def client(emulator: EmulatorThread) -> Iterator[segmind.SegmindClient]:
    client = make_client(emulator)
    yield client
    client._client.close()


def test_submit_async_wait_returns_the_completed_body(client: segmind.SegmindClient) -> None:
    job = client.submit_async(LARGE, prompt="You are beautiful")
    assert job.request_id and job.submit_response["status"] == "QUEUED"
    result = job.wait(timeout=10, interval=0.05)
    assert result["status"] == "COMPLETED"
    assert result["request_id"] == job.request_id
    assert result["metrics"]["inference_time"] > 0
    vector = output_vector(result["output"])  # a JSON string: decoded once more
    assert isinstance(result["output"], str)
    assert np.array_equal(vector, expected_vector("You are beautiful", 3072))


def test_status_then_result_by_hand(
    client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    job = client.submit_async(SMALL, prompt="by hand")
    assert job.status()["status"] in ("QUEUED", "PROCESSING")
    job.wait(timeout=10, interval=0.05)
    status = job.status()
    assert status["status"] == "COMPLETED" and "output" not in status
    output = orjson.loads(job.result()["output"])
    floats = np.asarray(output["data"][0]["embedding"], dtype=np.float32)
    assert np.array_equal(floats, expected_vector("by hand", 1536))
    stats = emulator.stats()
    assert stats["submits_accepted"] == 1 and stats["result_fetches"] >= 1


def test_run_is_submit_and_wait(client: segmind.SegmindClient, emulator: EmulatorThread) -> None:
    emulator.update(latency=(0.0, 0.0))  # run() polls every 1 s: answer at the first poll
    result = client.run(LARGE, prompt="run me")
    assert result["status"] == "COMPLETED"
    assert np.array_equal(output_vector(result["output"]), expected_vector("run me", 3072))


@pytest.mark.parametrize("shape", ["openai-object", "list", "embedding", "embeddings", "data"])
def test_other_output_shapes_reach_the_sdk(
    shape: str, client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    emulator.update(output_shape=shape)
    result = client.submit_async(LARGE, prompt=shape).wait(timeout=10, interval=0.05)
    assert np.array_equal(output_vector(result["output"]), expected_vector(shape, 3072))


def test_blocked_prompt_raises_inference_failed(client: segmind.SegmindClient) -> None:
    job = client.submit_async(LARGE, prompt="bad words [[blocked]]")
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=10, interval=0.05)
    assert failed.value.detail == BLOCKED_ERROR
    assert failed.value.status_body["status"] == "FAILED"
    assert failed.value.status_body["request_id"] == job.request_id
    body = job.result()  # the SDK tolerates the 422 of a FAILED body
    assert body["status"] == "FAILED" and body["error"] == BLOCKED_ERROR


def test_unknown_request_id_raises_404(
    client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    job = AsyncJob(
        request_id="nope",
        status_url=f"{emulator.url}/v2/requests/nope/status",
        response_url=f"{emulator.url}/v2/requests/nope",
        submit_response={},
        _client=client,
    )
    for call in (job.status, job.result):
        with pytest.raises(segmind.SegmindError) as error:
            call()
        assert error.value.status == 404
        assert error.value.detail and "nope" in error.value.detail


def test_expired_request_raises_404(
    client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    emulator.update(latency=(0.0, 0.0), retention=0.05)
    job = client.submit_async(LARGE, prompt="expires")
    time.sleep(0.15)  # past the 0.05 s retention, counted from the submit
    with pytest.raises(segmind.SegmindError) as error:
        job.status()
    assert error.value.status == 404


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_bad_or_missing_key_raises_401(
    key: str | None, emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    client = make_client(emulator, key)
    try:
        with pytest.raises(segmind.SegmindError) as error:
            client.submit_async(LARGE, prompt="hello")
        assert error.value.status == 401
        assert error.value.detail and "key" in error.value.detail
        with pytest.raises(segmind.SegmindError) as error:
            client.run_sync(LARGE, prompt="hello")
        assert error.value.status == 401
    finally:
        client._client.close()


def test_bad_request_and_unknown_model_raise(client: segmind.SegmindClient) -> None:
    with pytest.raises(segmind.SegmindError) as error:
        client.submit_async(LARGE, prompt="")
    assert error.value.status == 400
    with pytest.raises(segmind.SegmindError) as error:
        client.submit_async(LARGE, text="wrong field")
    assert error.value.status == 400
    with pytest.raises(segmind.SegmindError) as error:
        client.submit_async("no-such-model", prompt="hello")
    assert error.value.status == 404


def test_credits_and_limits_surface_as_segmind_errors(
    client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    emulator.update(credits=0.001, price=0.001)
    client.submit_async(LARGE, prompt="paid")
    with pytest.raises(segmind.SegmindError) as error:
        client.submit_async(LARGE, prompt="unpaid")
    assert error.value.status == 406
    emulator.update(credits=None, submit_limit="1/min")
    client.submit_async(LARGE, prompt="one a minute")
    with pytest.raises(segmind.SegmindError) as error:
        client.submit_async(LARGE, prompt="too soon")
    assert error.value.status == 429


def test_run_sync_answers_the_output(client: segmind.SegmindClient) -> None:
    response = client.run_sync(LARGE, prompt="sync via sdk")
    assert response.status_code == 200
    output = response.json()
    assert output["object"] == "list"
    assert np.array_equal(output_vector(output), expected_vector("sync via sdk", 3072))


def test_user_credits_through_the_sdk_client(
    client: segmind.SegmindClient, emulator: EmulatorThread
) -> None:
    # segmind.accounts.current() calls cloud.segmind.com, not the API root: it cannot be
    # pointed at the emulator, so use the SDK's own request path against base_url.
    emulator.update(credits=12.5, free_credits=0.5)
    body = client._request("GET", "/get-user-credits").json()
    assert body == {"credits": 12.5, "free-credits": 0.5}
