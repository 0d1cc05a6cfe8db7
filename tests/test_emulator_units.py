"""The emulator's pure parts: config validation, parsers, vectors, markers, limits, store."""

from __future__ import annotations

import dataclasses
import math
import random
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import orjson
import pytest

import batch_embed.emulator as emulator_package
from batch_embed.emulator import (
    OUTPUT_SHAPES,
    EmulatorConfig,
    EmulatorThread,
    expected_vector,
    parse_range,
    parse_rate,
)
from batch_embed.emulator.config import config_with_changes
from batch_embed.emulator.jobs import Job, JobState, JobStore
from batch_embed.emulator.limits import SlidingWindow, retry_after_seconds
from batch_embed.emulator.markers import NO_MARKERS, Markers, parse_markers
from batch_embed.emulator.output import render_result_body
from batch_embed.emulator.responses import retry_after
from batch_embed.emulator.vectors import exceeds_tokens, text_digest
from batch_embed.errors import ConfigError

# --- exports -----------------------------------------------------------------------------


def test_exports_are_sorted_and_complete() -> None:
    exported = emulator_package.__all__

    def isort_key(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_key)
    for name in (
        "Emulator",
        "EmulatorConfig",
        "EmulatorThread",
        "build_app",
        "expected_vector",
        "parse_rate",
    ):
        assert name in exported
    for name in exported:
        assert hasattr(emulator_package, name)


def test_package_docstring_documents_every_marker_and_the_ceiling() -> None:
    doc = emulator_package.__doc__ or ""
    for marker in (
        "[[blocked]]",
        "[[bad-output:nan]]",
        "[[bad-output:zeros]]",
        "[[bad-output:short]]",
        "[[bad-output:garbage]]",
        "[[slow:SECONDS]]",
        "[[fail-submit:CODE]]",
    ):
        assert marker in doc
    assert "req/s" in doc


# --- config ------------------------------------------------------------------------------


def test_defaults_are_a_healthy_api() -> None:
    config = EmulatorConfig()
    assert config.latency == (0.2, 1.0)
    assert config.cold_start_rate == 0.0
    assert config.submit_limit is None and config.read_limit is None
    assert config.shared_limit is None
    assert config.error_rate == config.drop_rate == config.lost_submit_rate == 0.0
    assert config.fail_rate == config.slow_rate == 0.0
    assert config.retention == 3600.0 and config.effective_result_ttl == 3600.0
    assert config.credits is None and config.api_key is None and config.seed is None
    assert config.retry_after_rate == 0.5 and config.retry_after_date_rate == 0.1
    assert config.output_shape == "openai-string"


def test_config_is_frozen_and_keyword_only() -> None:
    config = EmulatorConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.retention = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        EmulatorConfig("key")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"api_key": ""}, "api_key"),
        ({"latency": (1.0, 0.5)}, "latency"),
        ({"latency": (-1.0, 0.5)}, "latency"),
        ({"latency": (0.0, math.inf)}, "latency"),
        ({"latency": 0.5}, "latency"),
        ({"cold_start": (1.0,)}, "cold_start"),
        ({"slow": (2.0, 1.0)}, "slow"),
        ({"cold_start_rate": 1.5}, "cold_start_rate"),
        ({"error_rate": -0.1}, "error_rate"),
        ({"drop_rate": math.nan}, "drop_rate"),
        ({"fail_rate": "0.1"}, "fail_rate"),
        ({"lost_submit_rate": True}, "lost_submit_rate"),
        ({"retry_after_rate": 2}, "retry_after_rate"),
        ({"retry_after_date_rate": -1}, "retry_after_date_rate"),
        ({"html_error_rate": 3}, "html_error_rate"),
        ({"slow_rate": 7}, "slow_rate"),
        ({"submit_limit": "50"}, "submit_limit"),
        ({"read_limit": "0/s"}, "read_limit"),
        ({"shared_limit": "5/day"}, "shared_limit"),
        ({"retention": 0}, "retention"),
        ({"result_ttl": -5}, "result_ttl"),
        ({"credits": -1.0}, "credits"),
        ({"free_credits": math.inf}, "free_credits"),
        ({"price": -0.1}, "price"),
        ({"output_shape": "xml"}, "output_shape"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_config_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        EmulatorConfig(**changes)


def test_config_with_changes_accepts_json_values() -> None:
    config = config_with_changes(
        EmulatorConfig(), {"latency": "0-0.5", "cold_start": [1, 2], "credits": 3}
    )
    assert config.latency == (0.0, 0.5) and config.cold_start == (1, 2)
    assert config.credits == 3
    with pytest.raises(ConfigError, match="unknown config field"):
        config_with_changes(EmulatorConfig(), {"latencyy": "1"})
    with pytest.raises(ConfigError, match=r"^slow: "):
        config_with_changes(EmulatorConfig(), {"slow": "fast"})
    assert config.to_json()["latency"] == [0.0, 0.5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50/min", (50, 60.0)),
        ("5/s", (5, 1.0)),
        (" 7 / sec ", (7, 1.0)),
        ("1/m", (1, 60.0)),
        ("100/h", (100, 3600.0)),
        ("3/minute", (3, 60.0)),
    ],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "50", "0/s", "-1/s", "1.5/s", "x/s", "5/day", "5/", "/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        parse_rate(text)


def test_parse_range() -> None:
    assert parse_range("0.2-1.0") == (0.2, 1.0)
    assert parse_range("3") == (3.0, 3.0)
    assert parse_range(" 10 - 60 ") == (10.0, 60.0)
    for bad in ("", "a-b", "1-2-3", "-1"):
        with pytest.raises(ConfigError, match="range"):
            parse_range(bad)


# --- vectors -----------------------------------------------------------------------------


def test_expected_vector_is_deterministic_unit_float32() -> None:
    vector = expected_vector("hello", 3072)
    assert vector.dtype == np.float32 and vector.shape == (3072,)
    assert abs(float(np.linalg.norm(vector.astype(np.float64))) - 1.0) < 1e-5
    assert np.array_equal(vector, expected_vector("hello", 3072))
    assert not np.array_equal(vector, expected_vector("hello!", 3072))
    assert expected_vector("hello", 1536).shape == (1536,)
    assert expected_vector("hello", 3072) is not expected_vector("hello", 3072)


def test_expected_vector_follows_the_documented_formula() -> None:
    text = "formula ✓"
    seed = int.from_bytes(text_digest(text), "big")
    vector = np.random.default_rng(seed).standard_normal(16, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    assert np.array_equal(expected_vector(text, 16), vector)


def test_serialized_floats_round_trip_bit_exact() -> None:
    for i in range(300):
        text = f"round trip {i} {'é' * (i % 7)}"
        body = render_result_body(
            request_id="r",
            slug="text-embedding-3-large",
            text=text,
            digest=text_digest(text),
            dim=3072,
            shape="list" if i % 2 else "embedding",
            bad=None,
            inference_time=0.5,
        )
        output = orjson.loads(body)["output"]
        floats = output if i % 2 else output["embedding"]
        parsed = np.asarray(floats, dtype=np.float32)
        assert np.array_equal(parsed, expected_vector(text, 3072))


def test_exceeds_tokens_only_counts_long_texts() -> None:
    assert exceeds_tokens("short", 8191) is None
    assert exceeds_tokens(" the" * 3000, 8191) is None
    tokens = exceeds_tokens("hello " * 9000, 8191)
    assert tokens is not None and tokens > 8191
    assert exceeds_tokens("hello world", 1) == 2


# --- markers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", NO_MARKERS),
        ("[[unknown]] and [[slow:x]]", NO_MARKERS),
        ("a [[blocked]] b", Markers(blocked=True)),
        ("[[bad-output:nan]]", Markers(bad_output="nan")),
        ("[[bad-output:garbage]]", Markers(bad_output="garbage")),
        ("[[slow:2.5]]", Markers(slow=2.5)),
        ("[[slow:0]]", Markers(slow=0.0)),
        ("[[fail-submit:502]]", Markers(fail_submit=502)),
        ("[[fail-submit:200]]", NO_MARKERS),
        ("[[slow:1]][[blocked]]", Markers(blocked=True, slow=1.0)),
    ],
)
def test_parse_markers(text: str, expected: Markers) -> None:
    assert parse_markers(text) == expected


# --- limits and Retry-After --------------------------------------------------------------


def test_sliding_window_counts_accepted_requests_only() -> None:
    window = SlidingWindow("3/min")
    for now in (0.0, 10.0, 20.0):
        assert window.wait(now) == 0.0
        window.record(now)
    assert window.wait(30.0) == pytest.approx(30.0)
    assert window.wait(45.0) == pytest.approx(15.0)  # the 429s above took no slot
    assert window.wait(60.0) == 0.0
    window.record(60.0)
    assert window.wait(60.0) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("wait", "expected"), [(0.001, 1), (0.999, 1), (1.0, 1), (1.001, 2), (49.5, 50)]
)
def test_retry_after_seconds_round_up(wait: float, expected: int) -> None:
    assert retry_after_seconds(wait) == expected


def test_retry_after_http_date_never_promises_too_early() -> None:
    value = retry_after(12.2, random.Random(1), 1.0, wall_clock=lambda: 1_700_000_000.5)
    assert parsedate_to_datetime(value).timestamp() == 1_700_000_013
    assert retry_after(12.2, random.Random(1), 0.0) == "13"


# --- jobs --------------------------------------------------------------------------------


def _job(request_id: str, submitted: float, latency: float) -> Job:
    return Job(
        request_id=request_id,
        slug="s",
        dim=4,
        text="t",
        digest=b"d",
        submitted=submitted,
        started=submitted + latency / 4,
        finished=submitted + latency,
    )


def test_job_state_is_computed_from_times() -> None:
    job = _job("a", 0.0, 4.0)
    assert [job.state(t) for t in (0.0, 0.99, 1.0, 3.99, 4.0)] == [
        JobState.QUEUED,
        JobState.QUEUED,
        JobState.PROCESSING,
        JobState.PROCESSING,
        JobState.COMPLETED,
    ]
    job.error = "no"
    assert job.state(4.0) is JobState.FAILED


def test_store_prunes_by_retention_and_tracks_the_peak() -> None:
    store = JobStore()
    for i in range(4):
        store.add(_job(f"j{i}", float(i), 10.0), float(i), 100.0)
    assert store.peak_unfinished == 4 and store.unfinished(10.5) == 3
    assert store.get("j0", 99.9, 100.0) is not None
    assert store.get("j0", 100.0, 100.0) is None
    store.add(_job("late", 101.5, 1.0), 101.5, 100.0)
    assert len(store) == 3  # j0, j1 forgotten
    assert store.peak_unfinished == 4
    store.reset_peak(101.5)
    assert store.peak_unfinished == 1


def test_emulator_thread_reports_start_failures() -> None:
    with EmulatorThread(EmulatorConfig()) as first:
        port = int(first.url.rsplit(":", 1)[1])
        clash = EmulatorThread(EmulatorConfig(), port=port)
        with pytest.raises(RuntimeError, match="failed to start"):
            clash.start()


def test_output_shapes_constant_matches_the_docs() -> None:
    assert OUTPUT_SHAPES == (
        "openai-string",
        "openai-object",
        "list",
        "embedding",
        "embeddings",
        "data",
    )
