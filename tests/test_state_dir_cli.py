"""``--state-dir``: the journal and staged parts kept elsewhere than ``OUT.batch_embed/``,
resumed from there, read by ``status``, and guarded against a second output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, cli_env, run_cli
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-state-dir-0123456789"


@pytest.fixture(scope="module")
def emu() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0") as process:
        yield process  # type: ignore[misc]


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def run(
    emu: EmulatorProcess, source: Path, out: Path, state: Path
) -> subprocess.CompletedProcess[str]:
    command = batch_embed_cli(
        "run", source, "--output", out, "--state-dir", state, "--base-url", emu.url, *FAST, "-q"
    )
    return run_cli(command, KEY)


def test_the_journal_lives_in_the_state_dir_and_a_rerun_pays_nothing(
    emu: EmulatorProcess, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"sd {i}"} for i in range(9)])
    out, state = tmp_path / "out" / "v.parquet", tmp_path / "fast-disk" / "v-state"
    before = billed(emu)
    first = run(emu, source, out, state)
    assert first.returncode == 0, first.stderr
    assert (state / "journal.sqlite").exists()
    assert not (tmp_path / "out" / "v.parquet.batch_embed").exists()
    assert sorted(pq.read_table(out).column("id").to_pylist()) == list(range(9))
    again = run(emu, source, out, state)
    assert again.returncode == 0, again.stderr
    assert billed(emu) - before == 9
    shown = subprocess.run(
        batch_embed_cli("status", out, "--state-dir", state, "--json"),
        capture_output=True,
        text=True,
        env=cli_env(KEY),
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["rows_committed"] == 9


def test_a_state_dir_of_another_output_is_refused(emu: EmulatorProcess, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "sd"}])
    state = tmp_path / "state"
    assert run(emu, source, tmp_path / "a.parquet", state).returncode == 0
    before = billed(emu)
    done = run(emu, source, tmp_path / "b.parquet", state)
    assert done.returncode == 2
    assert f"holds the journal of the output {tmp_path / 'a.parquet'}" in done.stderr
    assert billed(emu) == before


def test_a_state_dir_inside_the_input_is_left_out(emu: EmulatorProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "in.jsonl", [{"id": i, "text": f"sd in {i}"} for i in range(3)])
    state = data / "state"
    for _ in range(2):
        done = run(emu, data, tmp_path / "v.parquet", state)
        assert done.returncode == 0, done.stderr
    assert sorted(pq.read_table(tmp_path / "v.parquet").column("id").to_pylist()) == [0, 1, 2]
