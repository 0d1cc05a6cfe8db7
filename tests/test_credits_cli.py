"""The credit balance before the first paid call, through the real CLI against the emulator
(``--credits``/``--price``: the balance falls by the price of each accepted submit)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, run_cli
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-credits-0123456789"


def command(verb: str, source: Path, out: Path, url: str, *extra: str) -> list[str]:
    return batch_embed_cli(verb, source, "--output", out, "--base-url", url, *FAST, *extra)


def corpus(path: Path, n: int, tag: str = "") -> Path:
    return write_jsonl(path, [{"id": i, "text": f"credit text {tag}{i}"} for i in range(n)])


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


def credit_asks(emu: EmulatorProcess) -> int:
    asked: dict[str, int] = emu.stats()["requests"]["credits"]  # type: ignore[index]
    return sum(asked.values())


def test_the_balance_is_shown_before_paying_and_falls_by_the_price(tmp_path: Path) -> None:
    with EmulatorProcess("--latency", "0", "--credits", "1", "--price", "0.01") as emu:
        first = run_cli(
            command("run", corpus(tmp_path / "a.jsonl", 10), tmp_path / "a", emu.url), KEY
        )
        assert first.returncode == 0, first.stderr
        assert "batch-embed: credits 1 (free 0)" in first.stderr
        second = run_cli(
            command("run", corpus(tmp_path / "b.jsonl", 3, "b"), tmp_path / "b", emu.url), KEY
        )
        assert second.returncode == 0, second.stderr
        assert "batch-embed: credits 0.9 (free 0)" in second.stderr
        assert credit_asks(emu) == 2
        assert KEY not in first.stderr + second.stderr


@pytest.fixture
def poor() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0", "--credits", "0.05", "--price", "0.01") as emu:
        yield emu  # type: ignore[misc]


def test_a_run_the_balance_cannot_pay_for_is_refused_before_paying(
    poor: EmulatorProcess, tmp_path: Path
) -> None:
    source = corpus(tmp_path / "in.jsonl", 10)
    done = run_cli(
        command("run", source, tmp_path / "v", poor.url, "--price-per-call", "0.01"), KEY
    )
    assert done.returncode == 2, done.stderr
    assert (
        "this run would make 10 paid calls at 0.01 = 0.1 credits, but the balance is 0.05: "
        "add --max-submits 5 to stop within it, or --yes to run anyway"
    ) in done.stderr
    assert billed(poor) == 0
    assert "Traceback" not in done.stderr


def test_a_cap_within_the_balance_lets_it_run(poor: EmulatorProcess, tmp_path: Path) -> None:
    source = corpus(tmp_path / "in.jsonl", 10)
    extra = ("--price-per-call", "0.01", "--max-submits", "5", "--quiet")
    done = run_cli(command("run", source, tmp_path / "v", poor.url, *extra), KEY)
    assert done.returncode == 6, done.stderr  # stopped at the cap
    assert billed(poor) == 5


def test_yes_runs_anyway_until_the_api_says_406(poor: EmulatorProcess, tmp_path: Path) -> None:
    source = corpus(tmp_path / "in.jsonl", 10)
    extra = ("--price-per-call", "0.01", "--yes", "--quiet")
    done = run_cli(command("run", source, tmp_path / "v", poor.url, *extra), KEY)
    assert done.returncode == 4, done.stderr  # the API stopped it: credits spent
    assert billed(poor) == 5


def test_a_failing_credit_endpoint_is_only_a_warning(tmp_path: Path) -> None:
    with EmulatorProcess("--latency", "0") as emu:
        request = urllib.request.Request(
            emu.url + "/_emulator/config",
            data=orjson.dumps({"credits_status": 503}),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        source = corpus(tmp_path / "in.jsonl", 4)
        extra = ("--price-per-call", "0.01", "--quiet")
        done = run_cli(command("run", source, tmp_path / "v", emu.url, *extra), KEY)
        assert done.returncode == 0, done.stderr
        assert "batch-embed: warning: could not ask the credit balance" in done.stderr
        assert billed(emu) == 4


def test_plan_shows_the_balance_and_warns_of_a_shortfall(
    poor: EmulatorProcess, tmp_path: Path
) -> None:
    source = corpus(tmp_path / "in.jsonl", 10)
    done = run_cli(
        command("plan", source, tmp_path / "v", poor.url, "--price-per-call", "0.01"), KEY
    )
    assert done.returncode == 0, done.stderr
    assert "batch-embed: credits 0.05 (free 0)" in done.stderr
    assert "warning: this run would make 10 paid calls" in done.stderr
    assert billed(poor) == 0
    assert poor.stats()["requests_total"] == 1  # the balance, and nothing else
