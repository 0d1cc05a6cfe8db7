"""The emulator's command line: the ``listening`` line, ``--help``, switches -> config."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from batch_embed.emulator import EmulatorConfig
from batch_embed.emulator.cli import build_parser, config_from_args, main

SWITCHES = (
    "--host",
    "--port",
    "--api-key",
    "--latency",
    "--cold-start-rate",
    "--cold-start",
    "--submit-limit",
    "--read-limit",
    "--shared-limit",
    "--retry-after-rate",
    "--retry-after-date-rate",
    "--error-rate",
    "--html-error-rate",
    "--drop-rate",
    "--lost-submit-rate",
    "--fail-rate",
    "--slow-rate",
    "--slow",
    "--retention",
    "--result-ttl",
    "--credits",
    "--free-credits",
    "--price",
    "--output-shape",
    "--seed",
)


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m batch_embed.emulator --port 0 ...`` and its first stdout line."""
    command = [sys.executable, "-m", "batch_embed.emulator", "--port", "0", "--latency", "0"]
    command += ["--api-key", "cli-key"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            yield process, process.stdout.readline()
        finally:
            process.terminate()
            process.wait(10)


def test_first_line_announces_the_url_and_the_server_answers(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, line = served
    assert line.startswith("listening http://127.0.0.1:")
    url = line.split()[1]
    port = int(url.rsplit(":", 1)[1])
    assert port > 0
    request = urllib.request.Request(
        f"{url}/v2/text-embedding-3-small",
        data=json.dumps({"prompt": "from the cli"}).encode(),
        headers={"x-api-key": "cli-key", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "QUEUED"
    assert body["status_url"].startswith(url)
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
        assert json.loads(response.read())["jobs_created"] == 1
    assert process.poll() is None


def test_terminate_exits_cleanly(served: tuple[subprocess.Popen[str], str]) -> None:
    process, line = served
    assert line.startswith("listening ")
    process.terminate()
    assert process.wait(10) == 0


def test_help_documents_every_switch_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for switch in SWITCHES:
        assert switch in text, switch
    assert "examples:" in text
    assert "--submit-limit 50/min" in text
    assert "[[blocked]]" in text and "/_emulator/stats" in text
    documented = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert documented == set(SWITCHES)


def test_switches_build_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--api-key",
            "k",
            "--latency",
            "0.5-2",
            "--cold-start-rate",
            "0.03",
            "--cold-start",
            "10-60",
            "--submit-limit",
            "50/min",
            "--read-limit",
            "10/s",
            "--shared-limit",
            "100/min",
            "--retry-after-rate",
            "0.7",
            "--retry-after-date-rate",
            "0.2",
            "--error-rate",
            "0.01",
            "--html-error-rate",
            "0.3",
            "--drop-rate",
            "0.02",
            "--lost-submit-rate",
            "0.03",
            "--fail-rate",
            "0.04",
            "--slow-rate",
            "0.05",
            "--slow",
            "2",
            "--retention",
            "60",
            "--result-ttl",
            "30",
            "--credits",
            "5",
            "--free-credits",
            "1",
            "--price",
            "0.01",
            "--output-shape",
            "list",
            "--seed",
            "9",
        ]
    )
    assert config_from_args(args) == EmulatorConfig(
        api_key="k",
        latency=(0.5, 2.0),
        cold_start_rate=0.03,
        cold_start=(10.0, 60.0),
        submit_limit="50/min",
        read_limit="10/s",
        shared_limit="100/min",
        retry_after_rate=0.7,
        retry_after_date_rate=0.2,
        error_rate=0.01,
        html_error_rate=0.3,
        drop_rate=0.02,
        lost_submit_rate=0.03,
        fail_rate=0.04,
        slow_rate=0.05,
        slow=(2.0, 2.0),
        retention=60.0,
        result_ttl=30.0,
        credits=5.0,
        free_credits=1.0,
        price=0.01,
        output_shape="list",
        seed=9,
    )
    assert config_from_args(build_parser().parse_args([])) == EmulatorConfig()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--submit-limit", "lots"], "--submit-limit"),
        (["--latency", "fast"], "--latency"),
        (["--drop-rate", "2"], "drop_rate"),
        (["--output-shape", "xml"], "--output-shape"),
    ],
)
def test_bad_switches_are_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert needle in capsys.readouterr().err


def test_a_taken_port_exits_1(
    served: tuple[subprocess.Popen[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, line = served
    port = line.strip().rsplit(":", 1)[1]
    assert main(["--port", port]) == 1
    assert "cannot listen" in capsys.readouterr().err
