"""The nightly backfill through the real CLI: the input's key, the output as the record, gone
rows and --prune, plan before paying, the submit cap, and failed rows on a re-run.

Every paid call is counted at the emulator (``jobs_created``: each created job is billed).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from batch_embed.emulator import expected_vector
from batch_embed.layout import layout_for
from tests.cli_fixtures import EmulatorProcess, run_cli
from tests.pipeline_fixtures import DIM, write_jsonl

KEY = "sk-test-backfill-0123456789"


def command(verb: str, source: Path, out: Path, url: str, *extra: str) -> list[str]:
    """``batch-embed VERB SOURCE --output OUT`` against ``url``, without --id-field."""
    return [
        sys.executable,
        "-m",
        "batch_embed",
        verb,
        str(source),
        "--output",
        str(out),
        "--base-url",
        url,
        "--rpm",
        "6000",
        "--read-rate",
        "400",
        "--quiet",
        "--summary-json",
        str(out.parent / f"{verb}.json"),
        *extra,
    ]


def summary(out: Path, verb: str = "run") -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads((out.parent / f"{verb}.json").read_bytes())
    return result


def paid_requests(emu: EmulatorProcess) -> int:
    """Every request but the credit balance's (which is free)."""
    stats: Any = emu.stats()
    return int(stats["requests_total"]) - sum(stats["requests"]["credits"].values())


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def rows(n: int, *, start: int = 0, tag: str = "") -> list[dict[str, Any]]:
    return [{"id": i, "text": f"document {i} of the corpus{tag}"} for i in range(start, start + n)]


def output_table(out: Path) -> dict[Any, tuple[str, np.ndarray]]:
    """The output as ``{id: (text_sha256, vector)}``, failing on a duplicated id."""
    table = pq.read_table(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an id appears twice in the output"
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    vectors = flat.reshape(len(ids), DIM)
    hashes = table.column("text_sha256").to_pylist()
    return {key: (h, v) for key, h, v in zip(ids, hashes, vectors, strict=True)}


def assert_output(out: Path, texts: dict[Any, str]) -> None:
    """The output holds exactly these keys, each with its own text's vector."""
    found = output_table(out)
    assert set(found) == set(texts)
    for key, (_, vector) in found.items():
        assert np.array_equal(vector, expected_vector(texts[key], DIM)), key


@pytest.fixture
def emu() -> Any:
    with EmulatorProcess("--latency", "0.02-0.1", "--api-key", KEY) as emulator:
        yield emulator


# -- 1. the key --------------------------------------------------------------------------------


def test_without_id_field_the_inputs_own_id_is_the_key(tmp_path: Path, emu: Any) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows(5, start=100))
    out = tmp_path / "out.parquet"
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert set(output_table(out)) == {100, 101, 102, 103, 104}
    assert summary(out)["key"] == "the input's 'id' field"
    assert "keys: the input's 'id' field" in done.stderr


def test_a_later_row_without_the_id_is_a_row_error(tmp_path: Path, emu: Any) -> None:
    records: list[Any] = [*rows(3), {"text": "a row with no id"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.parquet"
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 3, done.stderr
    assert f"{source}, line 4, field 'id': id is missing" in done.stderr
    assert set(output_table(out)) == {0, 1, 2}


def test_without_an_id_keys_are_derived_and_the_summary_warns(tmp_path: Path, emu: Any) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"t {i}"} for i in range(3)])
    out = tmp_path / "out.parquet"
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert set(output_table(out)) == {f"{source}:{i}" for i in (1, 2, 3)}
    assert "derived <file>:<line> keys (they move when lines move" in done.stderr


# -- 2. the output is the record ---------------------------------------------------------------


def changed_corpus() -> tuple[list[dict[str, Any]], dict[Any, str], int]:
    """Night 2 of a 30-row corpus: 2 texts changed, 3 new rows, a new key with a known text.

    Returns the rows, the texts the output must hold, and the paid calls night 2 owes (5).
    """
    night = rows(30)
    night[3]["text"] = "document 3, rewritten"
    night[7]["text"] = "document 7, rewritten"
    night += rows(3, start=30)
    night.append({"id": 99, "text": night[10]["text"]})  # same text, new key: copied
    return night, {r["id"]: r["text"] for r in night}, 5


@pytest.mark.parametrize("journal", ["kept", "deleted"])
def test_a_rerun_pays_only_for_what_changed(tmp_path: Path, emu: Any, journal: str) -> None:
    out = tmp_path / "out.parquet"
    source = write_jsonl(tmp_path / "in.jsonl", rows(30))
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    assert billed(emu) == 30
    if journal == "deleted":
        shutil.rmtree(layout_for(out).state_dir)
    night, texts, owed = changed_corpus()
    write_jsonl(source, night)
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert billed(emu) == 30 + owed
    assert_output(out, texts)
    result = summary(out)
    assert result["changed_rows"] == 2
    if journal == "deleted":
        assert result["rebuilt_from_output"] == 30
        assert "re-read 30 output rows as the record" in done.stderr
    # A third night with nothing changed pays nothing, with or without the journal.
    shutil.rmtree(layout_for(out).state_dir)
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    assert billed(emu) == 30 + owed
    assert_output(out, texts)


def test_a_directory_output_without_its_journal_pays_nothing_again(
    tmp_path: Path, emu: Any
) -> None:
    out = tmp_path / "vectors"
    source = write_jsonl(tmp_path / "in.jsonl", rows(20))
    assert (
        run_cli(command("run", source, out, emu.url, "--rows-per-part", "7"), KEY).returncode == 0
    )
    shutil.rmtree(layout_for(out).state_dir)
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert billed(emu) == 20
    assert summary(out)["resumed_done"] == 20


def test_another_model_than_the_outputs_is_refused_before_paying(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "out.parquet"
    source = write_jsonl(tmp_path / "in.jsonl", rows(4))
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    shutil.rmtree(layout_for(out).state_dir)
    other = command("run", source, out, emu.url, "--model", "text-embedding-3-small")
    done = run_cli(other, KEY)
    assert done.returncode == 2
    assert "holds model 'text-embedding-3-large', this run has model 'text-embedding-3-small'" in (
        done.stderr
    )
    assert billed(emu) == 4
    fresh = run_cli([*other, "--fresh"], KEY)
    assert fresh.returncode == 0, fresh.stderr
    assert billed(emu) == 8


# -- 3. gone rows ------------------------------------------------------------------------------


def test_gone_rows_are_kept_and_counted_and_pruned_on_request(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "out.parquet"
    source = write_jsonl(tmp_path / "in.jsonl", rows(10))
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    write_jsonl(source, rows(10)[2:])
    done = run_cli(command("run", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert summary(out)["gone"] == 2
    assert set(output_table(out)) == set(range(10))
    assert "2 rows gone from the input (kept in the output (--prune removes them))" in done.stderr
    pruned = run_cli(command("run", source, out, emu.url, "--prune"), KEY)
    assert pruned.returncode == 0, pruned.stderr
    assert summary(out)["pruned"] == 2
    assert_output(out, {r["id"]: r["text"] for r in rows(10)[2:]})
    # A pruned key that comes back is embedded again (its vector left with it).
    write_jsonl(source, rows(10))
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    assert_output(out, {r["id"]: r["text"] for r in rows(10)})
    assert billed(emu) == 12


# -- 4. plan -----------------------------------------------------------------------------------


def test_plan_makes_no_request_and_the_run_pays_exactly_to_submit(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "out.parquet"
    source = write_jsonl(tmp_path / "in.jsonl", rows(30))
    first = run_cli(command("plan", source, out, emu.url, "--price-per-call", "0.5"), KEY)
    assert first.returncode == 0, first.stderr
    plan = summary(out, "plan")
    assert (plan["new"], plan["to_submit"], plan["cost"]) == (30, 30, 15.0)
    assert plan["tokens"] > 30
    assert paid_requests(emu) == 0  # the plan asked the (free) credit balance, nothing else
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    assert billed(emu) == 30

    night, _, owed = changed_corpus()
    night.append({"id": 500, "text": "x " * 9000})  # over the token limit
    night[12:14] = []  # two rows gone
    write_jsonl(source, night)
    shutil.rmtree(layout_for(out).state_dir)
    before = paid_requests(emu)
    done = run_cli(command("plan", source, out, emu.url), KEY)
    assert done.returncode == 0, done.stderr
    assert paid_requests(emu) == before
    assert not layout_for(out).state_dir.exists()  # a plan writes nothing beside the output
    plan = summary(out, "plan")
    assert {k: plan[k] for k in ("new", "changed", "unchanged", "gone", "folded")} == {
        "new": 4,
        "changed": 2,
        "unchanged": 26,
        "gone": 2,
        "folded": 1,
    }
    assert (plan["to_submit"], plan["too_long"], plan["rows_read"]) == (owed, 1, 33)
    assert "to_submit 5 paid calls" in done.stderr
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 3
    assert billed(emu) == 30 + plan["to_submit"]


# -- 5. the cap --------------------------------------------------------------------------------


def test_the_cap_stops_the_run_and_the_next_one_continues(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "out.parquet"
    records = rows(40)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    done = run_cli(command("run", source, out, emu.url, "--max-submits", "12"), KEY)
    assert done.returncode == 6, done.stderr
    assert billed(emu) == 12
    result = summary(out)
    assert result["capped"] and result["rows_embedded"] == 12 and result["rows_failed"] == 0
    assert "stopped at the cap of 12 submits" in done.stderr
    assert len(output_table(out)) == 12
    cost = command("run", source, out, emu.url, "--price-per-call", "0.25", "--max-cost", "4")
    assert run_cli(cost, KEY).returncode == 6
    assert billed(emu) == 28
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 0
    assert billed(emu) == 40
    assert emu.stats()["texts_submitted_more_than_once"] == 0
    assert_output(out, {r["id"]: r["text"] for r in records})


# -- 6. failed rows on a re-run, and a job the service keeps losing ----------------------------


def test_content_failures_are_not_retried_unless_asked(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "out.parquet"
    records = [*rows(4), {"id": 50, "text": "this one is [[blocked]]"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 3
    assert billed(emu) == 5
    again = run_cli(command("run", source, out, emu.url), KEY)
    assert again.returncode == 3  # the errors file lists the row as failed as of this run
    assert billed(emu) == 5
    errors = [orjson.loads(line) for line in layout_for(out).errors.read_bytes().splitlines()]
    assert [(e["id"], e["kind"]) for e in errors] == [(50, "failed")]
    retried = run_cli(command("run", source, out, emu.url, "--retry-failed"), KEY)
    assert retried.returncode == 3
    assert billed(emu) == 6


def test_rows_aborted_for_spent_credits_are_retried_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    records = rows(20)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    switches = ("--latency", "0.02-0.1", "--api-key", KEY)
    with EmulatorProcess(*switches, "--credits", "0.0085", "--price", "0.001") as poor:
        done = run_cli(command("run", source, out, poor.url, "--max-in-flight", "4"), KEY)
        assert done.returncode == 4, done.stderr
        embedded_first = len(output_table(out))
        assert 0 < embedded_first < 20 and summary(out)["errors_by_kind"]["aborted"] > 0
    with EmulatorProcess(*switches) as rich:
        assert run_cli(command("run", source, out, rich.url), KEY).returncode == 0
        assert billed(rich) == 20 - embedded_first
    assert_output(out, {r["id"]: r["text"] for r in records})


def test_a_job_the_service_keeps_losing_is_paid_a_bounded_number_of_times(
    tmp_path: Path, emu: Any
) -> None:
    out = tmp_path / "out.parquet"
    records = [*rows(3), {"id": 77, "text": "a text whose job is [[lost]]"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    done = run_cli(command("run", source, out, emu.url, "--max-resubmits", "1"), KEY, timeout=90)
    assert done.returncode == 3, done.stderr
    assert billed(emu) == 3 + 2
    errors = [orjson.loads(line) for line in layout_for(out).errors.read_bytes().splitlines()]
    assert [(e["id"], e["kind"], e["attempts"]) for e in errors] == [(77, "lost", 2)]
    assert len(errors[0]["request_ids"]) == 2
    assert summary(out)["errors_by_kind"] == {"lost": 1}
    # Runs and resumes count together: the next run does not pay for it again.
    assert run_cli(command("run", source, out, emu.url), KEY).returncode == 3
    assert billed(emu) == 5


CRASH_AFTER_FIRST_REWRITE = """\
import os, sys
import batch_embed.output_index as index

real = index.drop_stale_rows

def once_then_die(path, drops):
    dropped = real(path, drops)
    if dropped:
        os._exit(9)  # killed between two file rewrites
    return dropped

index.drop_stale_rows = once_then_die
from batch_embed.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_crash_in_the_middle_of_a_rewrite_loses_nothing(tmp_path: Path, emu: Any) -> None:
    out = tmp_path / "vectors"
    records = rows(30)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    first = run_cli(command("run", source, out, emu.url, "--rows-per-part", "10"), KEY)
    assert first.returncode == 0, first.stderr
    night = [r for r in records if r["id"] not in (2, 25)]  # gone from parts 0 and 2
    night[14]["text"] = "document 16, rewritten"  # changed, in part 1
    write_jsonl(source, night)
    prune = command("run", source, out, emu.url, "--prune")
    crashed = run_cli([sys.executable, "-c", CRASH_AFTER_FIRST_REWRITE, *prune[3:]], KEY)
    assert crashed.returncode == 9, crashed.stderr
    done = run_cli(command("run", source, out, emu.url), KEY)  # finishes the rewrite first
    assert done.returncode == 0, done.stderr
    assert_output(out, {r["id"]: r["text"] for r in night})
    assert billed(emu) == 31
