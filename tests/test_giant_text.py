"""A giant text (issue 16, point 5): judged too long by its length, never tokenized in full.

The seam is the tokenizer itself: the shared cl100k encoding's ``encode_ordinary`` is
wrapped to record the length of every text it is given, so a test proves that no call saw
more than the bound, whatever code path tokenizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_embed import RunConfig, embed
from batch_embed.emulator import Emulator, EmulatorConfig
from batch_embed.models import model_spec
from batch_embed.records import ErrorKind
from batch_embed.tokens import (
    bounded_prefix,
    encode,
    encoding,
    longest_token_bytes,
    surely_over,
    token_span_bytes,
    truncate,
)
from tests.pipeline_fixtures import assert_vectors, error_rows, output_rows, write_jsonl

KEY = "sk-test-giant-0123456789"
LIMIT = model_spec("text-embedding-3-large").max_tokens
GIANT = 40 * 2**20
"""A 40 MB line: forty times the most bytes 8,191 tokens can spell."""


@pytest.fixture
def tokenized(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The lengths (characters) of every text the tokenizer is asked to encode."""
    enc = encoding()
    real = enc.encode_ordinary
    seen: list[int] = []

    def recording(text: str) -> list[int]:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(enc, "encode_ordinary", recording)
    yield seen


def test_the_bound_is_the_longest_token_of_the_vocabulary() -> None:
    values = encoding().token_byte_values()
    assert longest_token_bytes() == max(len(v) for v in values) == 128
    # Every token spells at most that many bytes, so these texts have exactly the tokens
    # the bound allows for: the span is tight, and never too small.
    longest = max(values, key=len).decode("utf-8")
    assert len(encode(longest * 3)) <= 3
    assert token_span_bytes(LIMIT) == LIMIT * 128


def test_surely_over_needs_more_bytes_than_the_span() -> None:
    span = token_span_bytes(LIMIT)
    assert not surely_over("a" * span, LIMIT)
    assert surely_over("a" * (span + 1), LIMIT)
    # Characters within the span, UTF-8 bytes beyond it: still proven too long.
    assert surely_over("é" * (span // 2 + 1), LIMIT)
    assert not surely_over("é" * (span // 2), LIMIT)
    assert len(bounded_prefix("b" * (span * 3), LIMIT)) == span


def giant_corpus(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    words = "the quick brown fox jumps over the lazy dog "
    giant = (words * (GIANT // len(words) + 1))[:GIANT]
    texts = {1: "a short text", 2: giant, 3: "another short text"}
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in texts.items()])
    assert source.stat().st_size > GIANT
    return source, texts


async def run(tmp_path: Path, source: Path, *, truncate: bool) -> tuple[object, dict[str, int]]:
    async with Emulator(EmulatorConfig()) as emu:
        result = await embed(
            RunConfig(
                inputs=(str(source),),
                output=tmp_path / "out.parquet",
                base_url=emu.url,
                api_key=KEY,
                id_field="id",
                rpm=6000.0,
                read_rate=400.0,
                truncate=truncate,
            )
        )
        stats = emu.stats()
    return result, {"jobs": int(stats["jobs_created"])}  # type: ignore[call-overload]


async def test_a_giant_line_is_too_long_without_being_tokenized(
    tmp_path: Path, tokenized: list[int]
) -> None:
    source, texts = giant_corpus(tmp_path)
    result, stats = await run(tmp_path, source, truncate=False)
    layout = result.layout  # type: ignore[attr-defined]
    failed = error_rows(layout)
    assert list(failed) == [2]
    assert failed[2]["kind"] == ErrorKind.TOO_LONG.value
    assert f"text has {GIANT} characters" in str(failed[2]["message"])
    assert f"limit of {LIMIT}" in str(failed[2]["message"])
    rows = output_rows(layout)
    assert sorted(rows) == [1, 3]
    assert_vectors(rows, texts)
    assert stats["jobs"] == 2  # the giant text is never paid for
    # Its length alone decided (the emulator in this process tokenizes the short texts).
    assert max(tokenized, default=0) < 100, tokenized


async def test_a_giant_line_is_truncated_from_a_bounded_prefix(
    tmp_path: Path, tokenized: list[int]
) -> None:
    source, texts = giant_corpus(tmp_path)
    result, stats = await run(tmp_path, source, truncate=True)
    layout = result.layout  # type: ignore[attr-defined]
    assert error_rows(layout) == {}
    rows = output_rows(layout)
    assert sorted(rows) == [1, 2, 3]
    assert stats["jobs"] == 3
    assert tokenized, "truncation must tokenize its prefix"
    assert max(tokenized) <= token_span_bytes(LIMIT) < GIANT // 40 + 1
    assert result.stats.truncated == 1  # type: ignore[attr-defined]
    # The vector is that of the cut text: a prefix of the giant one, within the limit.
    cut = truncate(encode(bounded_prefix(texts[2], LIMIT)), LIMIT)
    assert texts[2].startswith(cut) and len(cut) > LIMIT
    assert len(encode(cut)) <= LIMIT
    assert_vectors(rows, {**texts, 2: cut})
