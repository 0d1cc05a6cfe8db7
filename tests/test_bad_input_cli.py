"""Issue 4's bad inputs, one test per kind, through the real CLI run as a user runs it.

Row-level kinds: the bad line sits among good rows; the run finishes with exit 3, the good
rows are embedded with their own vectors, the bad one is an error row whose message names the
file, the line and the field, and the ledger balances. File-level kinds: the preflight over
every input refuses the run with exit 2 before anything is submitted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_embed.layout import layout_for
from batch_embed.records import text_hash
from batch_embed.tokens import encode, truncate
from batch_embed.writer import read_output
from tests.cli_fixtures import EmulatorProcess, cli_env
from tests.pipeline_fixtures import assert_vectors, error_rows, output_rows

KEY = "sk-test-bad-input-0123456789"
SOURCE = "in.jsonl"
GOOD: list[dict[str, Any]] = [{"id": i, "text": f"good row {i} of the corpus"} for i in range(5)]
BAD_LINE = 3
"""The bad line's number: two good rows before it, three after."""
MAX_TOKENS = 8191
LONG_TEXT = " ".join(["word"] * 9000)  # 9,000 tokens in cl100k_base

# Write-only sysfs attributes: the kernel refuses to open them for reading, even for root.
WRITE_ONLY = ("/sys/bus/pci/rescan", "/sys/bus/pci/drivers_probe", "/sys/bus/platform/uevent")


def run_cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batch_embed", "run", *args, "--id-field", "id", "--quiet"]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def emulate_env() -> dict[str, str]:
    """The user's environment without a key: --emulate needs none."""
    env = cli_env(KEY)
    del env["SEGMIND_API_KEY"]
    return env


def run_emulated(tmp_path: Path, bad: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``in.jsonl`` (good rows around ``bad`` at line BAD_LINE) with --emulate."""
    lines = [orjson.dumps(row) for row in GOOD]
    lines.insert(BAD_LINE - 1, bad)
    (tmp_path / SOURCE).write_bytes(b"\n".join(lines) + b"\n")
    output = str(tmp_path / "out.parquet")
    summary = str(tmp_path / "summary.json")
    return run_cli(
        tmp_path,
        SOURCE,
        "--output",
        output,
        "--summary-json",
        summary,
        "--emulate",
        *extra,
        env=emulate_env(),
    )


def summary(tmp_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads((tmp_path / "summary.json").read_bytes())
    ledger = result["files"][SOURCE]
    assert ledger["read"] == ledger["embedded"] + ledger["failed"] + ledger["skipped"]
    return result


def check_good_rows(tmp_path: Path, texts: dict[Any, str] | None = None) -> dict[Any, Any]:
    """Every good row is in the output with its own vector; returns the errors output."""
    layout = layout_for(tmp_path / "out.parquet")
    got = output_rows(layout)
    wanted = {row["id"]: row["text"] for row in GOOD} | (texts or {})
    assert set(got) == set(wanted)
    assert_vectors(got, wanted)
    return error_rows(layout)


# ---------------------------------------------------------------- row-level kinds


@dataclass(frozen=True)
class RowCase:
    line: bytes
    kind: str
    field: str | None
    key: object
    says: str


DERIVED = f"{SOURCE}:{BAD_LINE}"
ROW_CASES = {
    "malformed JSON": RowCase(b'{"id": 99, "text": "cut', "bad_input", None, DERIVED, "malformed"),
    "not an object": RowCase(b'["id", 99]', "bad_input", None, DERIVED, "not a JSON object"),
    "text missing": RowCase(
        b'{"id": 99, "body": "x"}', "bad_input", "text", 99, "text field is missing"
    ),
    "text null": RowCase(b'{"id": 99, "text": null}', "bad_input", "text", 99, "text is null"),
    "text not a string": RowCase(
        b'{"id": 99, "text": 12}', "bad_input", "text", 99, "must be a string, got an integer"
    ),
    "text empty": RowCase(b'{"id": 99, "text": ""}', "bad_input", "text", 99, "text is empty"),
    "text only whitespace": RowCase(
        b'{"id": 99, "text": " \\n\\t "}', "bad_input", "text", 99, "only whitespace"
    ),
    "text over the token limit": RowCase(
        orjson.dumps({"id": 99, "text": LONG_TEXT}),
        "too_long",
        "text",
        99,
        f"9000 tokens, more than the model's limit of {MAX_TOKENS}",
    ),
    "invalid UTF-8": RowCase(
        b'{"id": 99, "text": "bad \xff\xfe bytes"}', "bad_input", "text", 99, "invalid UTF-8"
    ),
    "duplicate id, other text": RowCase(
        b'{"id": 1, "text": "another text"}',
        "duplicate_id",
        "id",
        1,
        f"id 1 was already used by {SOURCE}, line 2 with a different text",
    ),
}


@pytest.mark.parametrize("case", ROW_CASES.values(), ids=ROW_CASES.keys())
def test_a_bad_row_is_an_error_row_and_the_good_rows_are_embedded(
    tmp_path: Path, case: RowCase
) -> None:
    done = run_emulated(tmp_path, case.line)
    assert done.returncode == 3, done.stderr
    where = f"{SOURCE}, line {BAD_LINE}"
    named = where if case.field is None else f"{where}, field {case.field!r}"
    assert f"{named}: " in done.stderr and case.says in done.stderr, done.stderr
    errors = check_good_rows(tmp_path)
    assert list(errors) == [case.key]
    record = errors[case.key]
    assert (record["kind"], record["field"]) == (case.kind, case.field)
    assert (record["source"], record["location"]) == (SOURCE, f"line {BAD_LINE}")
    assert str(record["message"]).startswith(f"{named}: ") and case.says in str(record["message"])
    result = summary(tmp_path)
    assert result["files"][SOURCE] == {
        "read": 6,
        "embedded": 5,
        "failed": 1,
        "skipped": 0,
        "left": 0,
    }
    assert result["errors_by_kind"] == {case.kind: 1}
    assert result["outcome"] == "rows_failed"


def test_a_text_over_the_token_limit_is_embedded_truncated_with_truncate(tmp_path: Path) -> None:
    done = run_emulated(tmp_path, orjson.dumps({"id": 99, "text": LONG_TEXT}), "--truncate")
    assert done.returncode == 0, done.stderr
    cut = truncate(encode(LONG_TEXT), MAX_TOKENS)
    assert len(encode(cut)) == MAX_TOKENS
    assert check_good_rows(tmp_path, {99: cut}) == {}
    table = read_output(tmp_path / "out.parquet").to_pylist()
    assert {r["id"]: r["text_sha256"] for r in table}[99] == text_hash(cut)
    result = summary(tmp_path)
    assert result["truncated"] == 1
    assert "truncated 1 texts to the model's token limit" in done.stderr
    assert result["files"][SOURCE] == {
        "read": 6,
        "embedded": 6,
        "failed": 0,
        "skipped": 0,
        "left": 0,
    }


def test_a_repeated_id_with_the_same_text_is_harmless(tmp_path: Path) -> None:
    done = run_emulated(tmp_path, orjson.dumps(GOOD[1]))
    assert done.returncode == 0, done.stderr
    assert check_good_rows(tmp_path) == {}
    result = summary(tmp_path)
    assert result["files"][SOURCE] == {
        "read": 6,
        "embedded": 5,
        "failed": 0,
        "skipped": 1,
        "left": 0,
    }
    assert result["repeated_ids"] == 1 and result["errors_by_kind"] == {}


# ---------------------------------------------------------------- file-level kinds


def no_text_column(path: Path) -> str:
    pq.write_table(pa.table({"id": [1, 2], "body": ["a", "b"]}), path / "notext.parquet")
    return "notext.parquet"


def int_text_column(path: Path) -> str:
    pq.write_table(pa.table({"id": [1, 2], "text": [1, 2]}), path / "ints.parquet")
    return "ints.parquet"


def empty_file(path: Path) -> str:
    (path / "empty.jsonl").write_bytes(b"")
    return "empty.jsonl"


def unknown_extension(path: Path) -> str:
    (path / "data.csv").write_text("id,text\n1,a\n")
    return "data.csv"


def unreadable_file(path: Path) -> str:
    """A file that cannot be opened for reading. chmod 000 stops anyone but root; as root,
    a link to a write-only sysfs attribute (EACCES for root too)."""
    bad = path / "locked.jsonl"
    if os.geteuid() != 0:
        bad.write_bytes(orjson.dumps(GOOD[0]) + b"\n")
        bad.chmod(0)
        return bad.name
    for target in WRITE_ONLY:
        try:
            with open(target, "rb"):
                pass
        except PermissionError:
            bad.symlink_to(target)
            return bad.name
        except OSError:
            continue
    raise AssertionError(f"running as root and none of {WRITE_ONLY} is unreadable")


FILE_CASES: dict[str, tuple[Callable[[Path], str], str, str | None]] = {
    "parquet without the text column": (no_text_column, "no such column", "text"),
    "parquet with a non-string text": (int_text_column, "has type int64, not a string", "text"),
    "empty file": (empty_file, "file is empty", None),
    "file that does not exist": (lambda _: "missing.jsonl", "no such file or directory", None),
    "file that cannot be read": (unreadable_file, "cannot be read: Permission denied", None),
    "unknown extension": (unknown_extension, "unknown file type", None),
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--latency", "0.02-0.1") as emu:
        yield emu


@pytest.mark.parametrize(("make", "says", "field"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_a_bad_file_fails_the_preflight_before_any_submit(
    tmp_path: Path,
    emulator: EmulatorProcess,
    make: Callable[[Path], str],
    says: str,
    field: str | None,
) -> None:
    (tmp_path / "good.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in GOOD))
    bad = make(tmp_path)
    before: dict[str, Any] = emulator.stats()
    output = tmp_path / "out.parquet"
    done = run_cli(
        tmp_path,
        "good.jsonl",
        bad,
        "--output",
        str(output),
        "--base-url",
        emulator.url,
        env=cli_env(KEY),
    )
    assert done.returncode == 2, done.stderr
    named = bad if field is None else f"{bad}, field {field!r}"
    assert f"batch-embed: error: {named}: " in done.stderr and says in done.stderr, done.stderr
    after: dict[str, Any] = emulator.stats()
    assert after["jobs_created"] == before["jobs_created"] == 0
    assert after["requests"]["submit"] == before["requests"]["submit"] == {}
    layout = layout_for(output)
    assert not output.exists() and not layout.errors.exists() and not layout.state_dir.exists()
