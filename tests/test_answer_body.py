"""Bounded answers (issue 16, point 1): every body is read up to the cap and no further."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from batch_embed import RunConfig, errors
from batch_embed.answer_body import DEFAULT_MAX_ANSWER_BYTES
from batch_embed.client import SegmindClient
from batch_embed.emulator.vectors import expected_vector
from tests.hostile_server import HUGE_ANSWER, MARK, Bad, HostileServer, MiB, gzip_bomb

KEY = "sk-test-answer-cap-0123456789"
TEXT = "an ordinary text"


@pytest.fixture
def plain() -> Iterator[HostileServer]:
    with HostileServer("result-huge", key=KEY) as server:
        yield server


@pytest.fixture
def chunked() -> Iterator[HostileServer]:
    with HostileServer("result-huge", key=KEY, chunked=True) as server:
        yield server


def client(url: str, cap: int = DEFAULT_MAX_ANSWER_BYTES) -> SegmindClient:
    return SegmindClient(api_key=KEY, base_url=url, max_answer_bytes=cap)


async def result_length(url: str, request_id: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v2/requests/{request_id}", headers={"x-api-key": KEY}) as resp,
    ):
        return len(await resp.read())


def test_the_gzip_bomb_is_a_valid_gzip_stream() -> None:
    bomb = gzip_bomb(8 * MiB)
    assert gzip.decompress(bomb) == b" " * (8 * MiB)
    assert len(gzip_bomb()) < 3 * MiB  # the 2 GB one: a few MB on the wire


@pytest.mark.parametrize("kind", ["plain", "chunked"])
async def test_an_answer_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(
    kind: str, request: pytest.FixtureRequest
) -> None:
    server: HostileServer = request.getfixturevalue(kind)
    async with client(server.url) as api:
        job = await api.submit(TEXT)
    size = await result_length(server.url, job.request_id)
    assert 30_000 < size < 100_000  # a 3072-float result
    async with client(server.url, cap=size) as api:
        vector = await api.result(job)
    assert np.array_equal(vector, expected_vector(TEXT, 3072))
    async with client(server.url, cap=size - 1) as api:
        with pytest.raises(errors.AnswerTooLarge) as info:
            await api.result(job)
    assert info.value.cap == size - 1
    assert info.value.request_id == job.request_id
    assert f"{size - 1}-byte cap (--max-answer-bytes {size - 1})" in str(info.value)
    # The announced length is refused up front; a chunked body when the byte over arrives.
    assert (f"answer of {size} bytes" in str(info.value)) is (kind == "plain")


@pytest.mark.parametrize(
    ("bad", "call"),
    [
        ("result-huge", "result"),
        ("result-gzip", "result"),
        ("status-huge", "status"),
        ("submit-huge", "submit"),
        ("credits-huge", "credits"),
    ],
)
async def test_a_huge_answer_is_cut_at_the_cap(bad: Bad, call: str) -> None:
    cap = 64 * 1024
    with HostileServer(bad, key=KEY) as server:
        async with client(server.url, cap=cap) as api:
            with pytest.raises(errors.AnswerTooLarge) as info:
                if call == "credits":
                    await api.credits()
                elif call == "submit":
                    await api.submit(f"text {MARK}")
                else:
                    job = await api.submit(f"text {MARK}")
                    await getattr(api, call)(job)
            if call != "credits":  # the next answers on the same client are normal again
                job = await api.submit(TEXT)
                assert np.array_equal(await api.result(job), expected_vector(TEXT, 3072))
        assert server.bad_answers == 1
        # The stream stopped when the client hung up, far short of the whole answer.
        assert server.bytes_sent < HUGE_ANSWER // 4
    err = info.value
    assert isinstance(err, errors.MalformedResponse)
    assert err.cap == cap
    assert f"{cap}-byte cap (--max-answer-bytes {cap})" in str(err)
    assert KEY not in repr(err) and KEY not in str(err)


def test_the_cap_is_validated_where_it_is_set(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="max_answer_bytes"):
        RunConfig(inputs=("in.jsonl",), output=tmp_path / "o.parquet", max_answer_bytes=100)
    with pytest.raises(errors.ConfigError, match="max_answer_bytes"):
        SegmindClient(api_key=KEY, max_answer_bytes=0)
    assert RunConfig(inputs=("x",), output=tmp_path / "o.parquet").max_answer_bytes == 4 * MiB
