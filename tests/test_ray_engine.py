"""End to end on a local Ray cluster: embed_dataset against the emulator (a process)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from batch_embed.emulator import expected_vector
from batch_embed.ray import embed_dataset, split_results
from batch_embed.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).parent))
from cli_fixtures import EmulatorProcess
from ray_fixtures import SubmitRecorder, collect, start_ray, stats_at

KEY = "sk-ray-test-secret-0123456789"
LIMIT = 20
"""Submits/s the emulator allows (a one-second sliding window)."""
FAST_READS = 400.0
SMALL = "text-embedding-3-small"
DIM = 1536


# Ray Data's DataContext warns about each of its own deprecated fields whenever a context is
# built or copied (we set none of them): only DeprecationWarnings raised in that module are
# ignored.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    start_ray()
    yield
    ray.shutdown()


def test_three_actors_share_one_budget_and_submit_each_text_once() -> None:
    distinct = [f"passage {i}: the quick brown fox, take {i * 7919 % 1000}" for i in range(200)]
    # 50 repeats of earlier texts, spread over later batches (so over other actors).
    texts = distinct + [distinct[(i * 37) % 200] for i in range(50)]
    rows = [{"id": i, "text": t} for i, t in enumerate(texts)]
    with EmulatorProcess(
        "--api-key", KEY, "--submit-limit", f"{LIMIT}/s", "--latency", "0.05-0.2", "--seed", "3"
    ) as emu:
        ds = embed_dataset(
            ray.data.from_items(rows),
            model=SMALL,
            base_url=emu.url,
            api_key=KEY,
            workers=3,
            rpm=LIMIT * 60,
            read_rate=FAST_READS,
            batch_size=25,
        )
        with SubmitRecorder(emu.url) as recorder:
            table = collect(ds)
        stats = stats_at(emu.url)

    assert table.num_rows == len(rows)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == list(range(len(rows)))
    assert table.column("error_kind").null_count == len(rows)
    assert table.schema.field("embedding").type.list_size == DIM
    for row_id, text, vector in zip(
        ids, table.column("text").to_pylist(), table.column("embedding").to_pylist(), strict=True
    ):
        assert text == texts[row_id]
        assert np.array_equal(np.asarray(vector, dtype=np.float32), expected_vector(text, DIM))

    assert stats["jobs_created"] == stats["distinct_texts"] == len(distinct)
    assert stats["max_submits_per_text"] == 1
    throttled = sum(stats["rate_limited"].values())
    assert throttled < 0.01 * stats["requests_total"], stats["rate_limited"]
    use = recorder.rate() / LIMIT
    assert 0.9 <= use <= 1.0, f"submits at {use:.0%} of the limit"


def test_error_rows_keep_their_place_and_never_show_the_key() -> None:
    blocked = "please embed this [[blocked]]"
    texts = ["ok one", "", blocked, "rejected [[fail-submit:400]]", "ok two"]
    texts += [f"filler {i}" for i in range(10)] + [blocked, "ok one"]
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    with EmulatorProcess("--api-key", KEY, "--latency", "0.02-0.05", "--seed", "5") as emu:
        ds = embed_dataset(
            ray.data.from_items(rows),
            model=SMALL,
            base_url=emu.url,
            api_key=KEY,
            workers=2,
            rpm=6000,
            read_rate=FAST_READS,
            batch_size=4,
        )
        vectors, errors = split_results(ds)
        good = collect(vectors)
        bad = collect(errors)
        stats = stats_at(emu.url)

    assert good.num_rows + bad.num_rows == len(rows)
    kinds = dict(
        zip(bad.column("id").to_pylist(), bad.column("error_kind").to_pylist(), strict=True)
    )
    assert kinds == {"r1": "bad_input", "r2": "failed", "r3": "rejected", "r15": "failed"}
    assert "embedding" not in bad.column_names
    assert "error_kind" not in good.column_names
    for message in bad.column("error").to_pylist():
        assert KEY not in message
    assert (
        "blocked"
        in dict(zip(bad.column("id").to_pylist(), bad.column("error").to_pylist(), strict=True))[
            "r2"
        ]
    )
    for row_id, text, vector in zip(
        good.column("id").to_pylist(),
        good.column("text").to_pylist(),
        good.column("embedding").to_pylist(),
        strict=True,
    ):
        assert np.array_equal(np.asarray(vector, dtype=np.float32), expected_vector(text, DIM)), (
            row_id
        )
    # Each billed text once: the blocked one too, though two rows asked for it.
    assert stats["max_submits_per_text"] == 1
    assert stats["jobs_created"] == len({t for t in texts if t and "fail-submit" not in t})


def test_a_job_that_keeps_expiring_is_resubmitted_then_lost() -> None:
    rows = [{"id": 1, "text": "vanishing text"}, {"id": 2, "text": "vanishing text"}]
    # Jobs expire 0.2 s after submit, long before their 1 s latency: every poll is a 404.
    with EmulatorProcess("--api-key", KEY, "--latency", "1.0", "--retention", "0.2") as emu:
        ds = embed_dataset(
            ray.data.from_items(rows),
            model=SMALL,
            base_url=emu.url,
            api_key=KEY,
            workers=1,
            rpm=6000,
            read_rate=FAST_READS,
            max_resubmits=2,
            policy=RetryPolicy(base=0.02, cap=0.1),
        )
        table = collect(ds)
        stats = stats_at(emu.url)
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("error_kind").to_pylist() == ["lost", "lost"]
    assert table.column("embedding").null_count == 2
    assert stats["jobs_created"] == 3  # the first submit and two resubmits, shared by both rows
    message = table.column("error").to_pylist()[0]
    assert "3 times" in message and KEY not in message
