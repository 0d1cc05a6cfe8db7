"""Hostile answers through the real CLI (issue 16, points 1 and 6).

A 50-row run against :class:`~tests.hostile_server.HostileServer`, which gives one row in 50
an absurd answer on every attempt: the bad row ends in the errors output with an error that
names the cap, every other row is embedded (its vector checked), the exit code is 3, every
submit is counted at the server, and the key appears nowhere. Peak memory is a benchmark
figure (``benchmarks/hostile_memory.py``), not a test.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batch_embed.layout import layout_for
from batch_embed.spending import DEFAULT_MAX_RESUBMITS
from tests.cli_fixtures import FAST, batch_embed_cli, run_cli
from tests.hostile_server import MARK, Bad, HostileServer
from tests.pipeline_fixtures import assert_vectors, error_rows, output_rows, write_jsonl
from tests.test_secret import assert_no_leak, scan_tree, search

KEY = "sk-test-hostile-0123456789abcdef"
ROWS = 50
BAD_ROW = 7
CAP = 4 * 2**20
MAX_ATTEMPTS = 6
"""The default RetryPolicy's attempts: what a malformed answer is retried up to."""


def corpus(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    texts = {i: f"row {i} of a corpus that meets a hostile gateway" for i in range(ROWS)}
    texts[BAD_ROW] += f" {MARK}"
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in texts.items()])
    return source, texts


def command(source: Path, out: Path, url: str, *extra: str) -> list[str]:
    return batch_embed_cli(
        "run",
        source,
        "--output",
        out,
        "--base-url",
        url,
        "--allow-insecure-http",
        *FAST,
        "--quiet",
        "--summary-json",
        out.parent / "summary.json",
        *extra,
    )


@pytest.mark.parametrize("bad", ["result-huge", "result-gzip", "submit-huge", "status-huge"])
def test_a_hostile_answer_fails_its_row_naming_the_cap(tmp_path: Path, bad: Bad) -> None:
    source, texts = corpus(tmp_path)
    out = tmp_path / "out" / "vectors.parquet"
    out.parent.mkdir()
    with HostileServer(bad, key=KEY) as server:
        done = run_cli(command(source, out, server.url), KEY, timeout=110)
    assert done.returncode == 3, done.stderr
    layout = layout_for(out)
    failed = error_rows(layout)
    assert list(failed) == [BAD_ROW]
    message = str(failed[BAD_ROW]["message"])
    assert f"{CAP}-byte cap (--max-answer-bytes {CAP})" in message, message
    # A submit answered 2xx but unusably created a paid job each time: after 1 + the
    # resubmit allowance (--max-resubmits, 2) the row is lost; other causes retry as usual.
    assert failed[BAD_ROW]["kind"] == ("lost" if bad == "submit-huge" else "retries_exhausted")
    rows = output_rows(layout)
    assert sorted(rows) == [i for i in range(ROWS) if i != BAD_ROW]
    assert_vectors(rows, texts)
    # Every paid call counted: one submit per good text; the bad one as the policy retries.
    bad_text = texts[BAD_ROW]
    assert all(server.submits[t] == 1 for i, t in texts.items() if i != BAD_ROW)
    expected_bad_submits = 1 + DEFAULT_MAX_RESUBMITS if bad == "submit-huge" else 1
    assert server.submits[bad_text] == expected_bad_submits
    assert server.bad_answers == (expected_bad_submits if bad == "submit-huge" else MAX_ATTEMPTS)
    summary = orjson.loads((out.parent / "summary.json").read_bytes())
    assert summary["rows_failed"] == 1 and summary["rows_embedded"] == ROWS - 1, summary
    assert summary["submits"] == sum(server.submits.values())
    assert server.wrong_keys == 0
    hits = search(done.stdout + done.stderr, "the CLI's output", [KEY])
    assert_no_leak(hits + scan_tree(tmp_path, [KEY]))


def test_a_smaller_cap_fails_every_result_and_says_so(tmp_path: Path) -> None:
    """A cap below a normal 3072-float result: each row's error names that cap (exit 3)."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"t {i}"} for i in range(3)])
    out = tmp_path / "vectors.parquet"
    with HostileServer("result-huge", key=KEY) as server:
        done = run_cli(command(source, out, server.url, "--max-answer-bytes", "16K"), KEY, 110)
    assert done.returncode == 3, done.stderr
    failed = error_rows(layout_for(out))
    assert sorted(failed) == [0, 1, 2]
    assert all(
        "16384-byte cap (--max-answer-bytes 16384)" in str(r["message"]) for r in failed.values()
    )


@pytest.mark.parametrize("value", ["12", "lots", "-5", "4X"])
def test_a_bad_cap_is_a_usage_error_naming_the_flag(tmp_path: Path, value: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "t"}])
    for verb in ("run", "plan"):
        args = command(source, tmp_path / "v.parquet", "http://127.0.0.1:9")
        args[3] = verb
        done = run_cli([*args, f"--max-answer-bytes={value}"], KEY)
        assert done.returncode == 2, done.stderr
        assert "--max-answer-bytes" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_huge_credit_balance_answer_is_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    """The balance is asked before the first paid call; a 300 MB answer is cut at the cap."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"c {i}"} for i in range(4)])
    out = tmp_path / "vectors.parquet"
    with HostileServer("credits-huge", key=KEY) as server:
        done = run_cli(command(source, out, server.url), KEY, timeout=110)
    assert done.returncode == 0, done.stderr
    assert "warning: could not ask the credit balance" in done.stderr
    assert f"{CAP}-byte cap" in done.stderr
    assert sorted(output_rows(layout_for(out))) == [0, 1, 2, 3]
