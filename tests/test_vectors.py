"""Tests of parse_output: every accepted output shape, and every way an output can be unusable."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest

from batch_embed.emulator import OUTPUT_SHAPES, expected_vector
from batch_embed.emulator.output import render_provider_json
from batch_embed.emulator.vectors import text_digest
from batch_embed.errors import BODY_EXCERPT_CHARS, BadVector
from batch_embed.vectors import fast_vector, parse_output, validate_vector

DIM = 8
VECTOR = expected_vector("the reference text", DIM)  # float32, unit norm
FLOATS = VECTOR.tolist()  # Python floats that round-trip to the float32 values exactly


def openai(floats: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": floats}],
        "model": "text-embedding-3-large",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


ACCEPTED: dict[str, Any] = {
    "openai-object": openai(FLOATS),
    "openai-string": orjson.dumps(openai(FLOATS)).decode(),
    "openai-bytes": orjson.dumps(openai(FLOATS)),
    "bare-list": FLOATS,
    "bare-list-string": orjson.dumps(FLOATS).decode(),
    "one-row-batch": [FLOATS],
    "embedding": {"embedding": FLOATS},
    "embedding-string": orjson.dumps({"embedding": FLOATS}).decode(),
    "embeddings": {"embeddings": [FLOATS]},
    "data-lists": {"data": [FLOATS]},
    "data-lists-string": orjson.dumps({"data": [FLOATS]}).decode(),
    "openai-extra-fields": {**openai(FLOATS), "id": "x", "warnings": None},
    "openai-as-json-text-with-spaces": "  " + orjson.dumps(openai(FLOATS)).decode() + "\n",
}


@pytest.mark.parametrize("output", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_accepted_shape_gives_the_vector_bit_exact(output: Any) -> None:
    vector = parse_output(output, dim=DIM, request_id="r-1")
    assert vector.dtype == np.float32
    assert vector.shape == (DIM,)
    assert np.array_equal(vector, VECTOR)


@pytest.mark.parametrize("shape", OUTPUT_SHAPES)
def test_every_emulator_shape_parses_bit_exact(shape: str) -> None:
    text = "ünïcödé text ✓"
    provider = render_provider_json(
        slug="text-embedding-3-large",
        text=text,
        digest=text_digest(text),
        dim=3072,
        shape=shape,  # type: ignore[arg-type]
        bad=None,
    )
    output: Any = provider.decode() if shape == "openai-string" else orjson.loads(provider)
    assert np.array_equal(parse_output(output, dim=3072), expected_vector(text, 3072))


def test_integers_are_numbers() -> None:
    vector = parse_output({"embedding": [1, 2, 3, 0, -1]}, dim=5)
    assert vector.tolist() == [1.0, 2.0, 3.0, 0.0, -1.0]
    assert vector.dtype == np.float32


def test_the_documented_order_wins_when_a_body_matches_several_shapes() -> None:
    first, second = FLOATS, [x * 2 for x in FLOATS]
    expected_first = np.asarray(first, dtype=np.float32)
    # OpenAI shape first, then embedding, then embeddings, then data-lists (segmind-v2.md)
    cases = [
        {**openai(first), "embedding": second},
        {"embedding": first, "embeddings": [second]},
        {"embedding": first, "data": [second]},
        {"embeddings": [first], "data": [second]},
    ]
    for output in cases:
        assert np.array_equal(parse_output(output, dim=DIM), expected_first), output


REJECTED: dict[str, tuple[Any, str]] = {
    # unknown shapes
    "none": (None, "no embedding"),
    "number": (3.5, "no embedding"),
    "true": (True, "no embedding"),
    "empty-dict": ({}, "no embedding"),
    "empty-list": ([], "no embedding"),
    "result-key": ({"result": FLOATS}, "no embedding"),
    "vector-key": ({"vector": FLOATS}, "no embedding"),
    "data-empty": ({"data": []}, "no embedding"),
    "data-dict-without-embedding": ({"data": [{"values": FLOATS}]}, "no embedding"),
    "data-of-numbers": ({"data": FLOATS}, "no embedding"),
    "embedding-null": ({"embedding": None}, "no embedding"),
    "embedding-empty": ({"embedding": []}, "no embedding"),
    "embedding-dict": ({"embedding": {"0": 0.1}}, "no embedding"),
    "embeddings-flat": ({"embeddings": FLOATS}, "no embedding"),
    "embeddings-empty": ({"embeddings": []}, "no embedding"),
    "two-row-batch": ([FLOATS, FLOATS], "no embedding"),
    "json-string-of-a-string": (orjson.dumps("hello").decode(), "no embedding"),
    "json-null-string": ("null", "no embedding"),
    # strings that are not JSON
    "plain-text": ("the embedding is [0.1, 0.2]", "not JSON"),
    "empty-string": ("", "not JSON"),
    "truncated-json": (orjson.dumps(openai(FLOATS)).decode()[:-5], "not JSON"),
    "python-repr": (repr(openai(FLOATS)), "not JSON"),
    "nan-literal-string": (
        "[NaN" + orjson.dumps(FLOATS[1:]).decode().replace("[", ","),
        "not JSON",
    ),
    "bytes-garbage": (b"\xff\xfe\x00garbage", "not JSON"),
    # wrong length
    "short": (FLOATS[:-1], "7 values, expected 8"),
    "long": ([*FLOATS, 0.5], "9 values, expected 8"),
    "half": ({"embedding": FLOATS[:4]}, "expected 8"),
    "single": ([0.5], "expected 8"),
    # not finite
    "nan": ([math.nan, *FLOATS[1:]], "NaN or infinite"),
    "inf": ([*FLOATS[:-1], math.inf], "NaN or infinite"),
    "minus-inf": ({"embedding": [-math.inf, *FLOATS[1:]]}, "NaN or infinite"),
    "overflows-float32": ({"embedding": [1e39, *FLOATS[1:]]}, "NaN or infinite"),
    "overflows-float32-string": ("[1e39," + orjson.dumps(FLOATS[1:]).decode()[1:], "infinite"),
    # zeros
    "zeros": ([0.0] * DIM, "all zeros"),
    "int-zeros": ({"embedding": [0] * DIM}, "all zeros"),
    "negative-zeros": ([-0.0] * DIM, "all zeros"),
    "underflows-to-zero": ([1e-50] * DIM, "all zeros"),
    # nested wrong shape
    "embedding-2d": ({"embedding": [FLOATS, FLOATS]}, "shape"),
    "openai-2d": (openai([FLOATS]), "shape"),
    "data-3d": ({"data": [[FLOATS]]}, "shape"),
    "embeddings-3d": ({"embeddings": [[FLOATS]]}, "shape"),
    "ragged": ({"embedding": [[0.1], [0.2, 0.3]]}, "embedding"),
    # not numbers
    "strings": ({"embedding": [str(x) for x in FLOATS]}, "non-numeric"),
    "string-in-list": ([*FLOATS[:-1], "0.5"], "non-numeric"),
    "null-in-list": ([*FLOATS[:-1], None], "NaN"),
    "dict-in-list": ([*FLOATS[:-1], {"x": 1}], "non-numeric"),
    "booleans": ([True, False] * (DIM // 2), "non-numeric"),
    "huge-int": ([10**400, *FLOATS[1:]], "non-numeric"),
}


@pytest.mark.parametrize(("output", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_unusable_outputs_are_bad_vectors(output: Any, reason: str) -> None:
    with pytest.raises(BadVector) as info:
        parse_output(output, dim=DIM, request_id="r-9")
    err = info.value
    assert reason in str(err)
    assert err.detail is not None and reason in err.detail
    assert err.request_id == "r-9"
    assert err.status is None
    assert str(err) == f"{err.detail}: {err.body_excerpt}"
    assert len(err.body_excerpt) <= BODY_EXCERPT_CHARS


@pytest.mark.parametrize(
    "output",
    [
        {"result": "a" * 190 + "TAIL" * 100},
        "not json " + "a" * 190 + "TAIL" * 100,
        b"not json " + b"a" * 190 + b"TAIL" * 100,
        "\u00e9" * 199 + "TAIL" * 100,  # multi-byte characters count as one
        ["x"] * 50 + ["TAIL"] * 100,
    ],
    ids=["dict", "string", "bytes", "multibyte", "list"],
)
def test_the_message_quotes_at_most_200_characters(output: Any) -> None:
    with pytest.raises(BadVector) as info:
        parse_output(output, dim=DIM)
    err = info.value
    assert len(err.body_excerpt) == BODY_EXCERPT_CHARS
    assert "TAILTAIL" not in str(err)
    assert str(err).endswith(err.body_excerpt)
    assert len(str(err)) <= len(err.detail or "") + 2 + BODY_EXCERPT_CHARS


def test_a_short_body_is_quoted_whole() -> None:
    with pytest.raises(BadVector) as info:
        parse_output({"vector": [1]}, dim=DIM)
    assert info.value.body_excerpt == '{"vector":[1]}'


def test_the_quote_of_a_json_string_output_is_the_string_itself() -> None:
    output = '{"weird": true}'
    with pytest.raises(BadVector) as info:
        parse_output(output, dim=DIM)
    assert info.value.body_excerpt == output


def test_validate_vector_directly() -> None:
    assert validate_vector(VECTOR.copy(), dim=DIM) is not None
    with pytest.raises(BadVector, match="expected 4"):
        validate_vector(VECTOR, dim=4)
    with pytest.raises(BadVector, match="all zeros"):
        validate_vector(np.zeros(DIM, dtype=np.float32), dim=DIM)
    broken = VECTOR.copy()
    broken[3] = np.nan
    with pytest.raises(BadVector, match="NaN"):
        validate_vector(broken, dim=DIM)


def test_a_tiny_but_nonzero_vector_is_accepted() -> None:
    tiny = [0.0] * (DIM - 1) + [1e-30]
    assert parse_output(tiny, dim=DIM)[-1] == np.float32(1e-30)


# -- fast_vector: the simdjson fast path never accepts what parse_output would not -----------


def completed(output: Any) -> bytes:
    """A COMPLETED result body carrying ``output`` (NaN and huge ints written as Python does)."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    return json.dumps({"status": "COMPLETED", "output": output}).encode()


@pytest.mark.parametrize("output", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_fast_path_agrees_with_the_general_path_on_accepted_outputs(output: Any) -> None:
    fast = fast_vector(completed(output), dim=DIM)
    if fast is not None:
        assert fast.dtype == np.float32
        assert np.array_equal(fast, VECTOR)


@pytest.mark.parametrize("key", ["openai-object", "openai-string", "openai-extra-fields"])
def test_openais_shape_takes_the_fast_path(key: str) -> None:
    fast = fast_vector(completed(ACCEPTED[key]), dim=DIM)
    assert fast is not None and np.array_equal(fast, VECTOR)


NESTED: dict[str, Any] = {
    "openai-singletons": openai([[x] for x in FLOATS]),
    "openai-ragged": openai([[FLOATS[0], FLOATS[1]], [], *FLOATS[2:]]),
    "openai-2d-string": orjson.dumps(openai([FLOATS])).decode(),
}


@pytest.mark.parametrize(
    "output",
    [*(o for o, _ in REJECTED.values()), *NESTED.values()],
    ids=[*REJECTED.keys(), *NESTED.keys()],
)
def test_fast_path_declines_every_unusable_output(output: Any) -> None:
    assert fast_vector(completed(output), dim=DIM) is None
    with pytest.raises(BadVector):
        parse_output(json.loads(completed(output))["output"], dim=DIM)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "IN_PROGRESS", "output": null}',
        orjson.dumps({"status": "FAILED", "output": openai(FLOATS)}),
        orjson.dumps({"output": openai(FLOATS)}),
        orjson.dumps([openai(FLOATS)]),
        b"",
        b"<html>502 Bad Gateway</html>",
        orjson.dumps({"status": "COMPLETED", "output": openai(FLOATS)})[:-3],
    ],
    ids=["in-progress", "failed", "no-status", "not-an-object", "empty", "html", "truncated"],
)
def test_fast_path_declines_bodies_that_are_not_a_completed_result(body: bytes) -> None:
    assert fast_vector(body, dim=DIM) is None


def test_fast_path_survives_a_proxy_kept_alive_elsewhere() -> None:
    body = completed(ACCEPTED["openai-object"])
    first = fast_vector(body, dim=DIM)
    second = fast_vector(body, dim=DIM)
    assert first is not None and second is not None and np.array_equal(first, second)
