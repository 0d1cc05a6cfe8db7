"""Settings from a config file and the environment, through the real CLI: one test per
precedence rule (file > default, env > file, flag > env), the refusals (unknown key, wrong
type, bad value, a key in a file others can read), and ``batch-embed config``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from tests.cli_fixtures import EmulatorProcess
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-settings-0123456789"


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_EMBED_")}
    environ.pop("SEGMIND_API_KEY", None)
    environ.pop("PYTHONWARNINGS", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "batch_embed", *map(str, args)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = cli("config", *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def toml(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_file_beats_default(tmp_path: Path) -> None:
    conf = toml(tmp_path / "n.toml", 'rpm = 20\nid-field = "doc_id"\nshared-limit = true\n')
    found = settings("--config", conf)
    assert found["rpm"] == {"value": 20.0, "source": "file"}
    assert found["id-field"] == {"value": "doc_id", "source": "file"}
    assert found["shared-limit"] == {"value": True, "source": "file"}
    assert found["max-resubmits"] == {"value": 2, "source": "default"}


@pytest.mark.parametrize(("value", "size"), [('"4M"', 4 * 2**20), ("2048", 2048)])
def test_a_size_may_be_a_number_or_a_string(tmp_path: Path, value: str, size: int) -> None:
    conf = toml(tmp_path / "n.toml", f"max-answer-bytes = {value}\n")
    assert settings("--config", conf)["max-answer-bytes"] == {"value": size, "source": "file"}


def test_environment_beats_file(tmp_path: Path) -> None:
    conf = toml(tmp_path / "n.toml", "rpm = 20\nshared-limit = true\n")
    env = {"BATCH_EMBED_RPM": "70", "BATCH_EMBED_SHARED_LIMIT": "no"}
    found = settings("--config", conf, env=env)
    assert found["rpm"] == {"value": 70.0, "source": "env"}
    assert found["shared-limit"] == {"value": False, "source": "env"}


def test_flag_beats_environment(tmp_path: Path) -> None:
    conf = toml(tmp_path / "n.toml", "rpm = 20\n")
    found = settings("--config", conf, "--rpm", "80", env={"BATCH_EMBED_RPM": "70"})
    assert found["rpm"] == {"value": 80.0, "source": "flag"}


def test_the_config_file_may_come_from_the_environment(tmp_path: Path) -> None:
    conf = toml(tmp_path / "n.toml", "max-submits = 20000\n")
    found = settings(env={"BATCH_EMBED_CONFIG": str(conf)})
    assert found["max-submits"] == {"value": 20000, "source": "file"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rmp = 50\n", "unknown key 'rmp'; did you mean rpm?"),
        ('rpm = "fast"\n', "rpm: expected a number > 0, got 'fast'"),
        ("rpm = -5\n", "rpm: expected a number > 0, got '-5'"),
        ("max-submits = 2.5\n", "max-submits: expected an integer, got '2.5'"),
        ('shared-limit = "yes"\n', "shared-limit: expected true or false, got 'yes'"),
        ('model = "gpt-9"\n', "model: expected one of gemini-embedding-001, text-embedding-3"),
        ("input = [1, 2]\n", "input: expected a string or a list of strings"),
        ("rpm = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_exit_2_naming_the_file_and_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    conf = toml(tmp_path / "bad.toml", text)
    done = cli("run", "in.jsonl", "--output", tmp_path / "v.parquet", "--config", conf)
    assert done.returncode == 2
    assert f"batch-embed: error: {conf}: " in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    done = cli("config", env={"BATCH_EMBED_MAX_IN_FLIGHT": "many"})
    assert done.returncode == 2
    assert "environment BATCH_EMBED_MAX_IN_FLIGHT: expected an integer, got 'many'" in done.stderr


def test_a_key_in_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    conf = toml(tmp_path / "k.toml", f'api-key = "{KEY}"\n', mode=0o644)
    done = cli("config", "--config", conf)
    assert done.returncode == 2
    assert "api-key: the file is readable by others (mode 0644); chmod 600" in done.stderr
    assert KEY not in done.stderr + done.stdout


def test_a_whole_run_from_a_config_file_with_its_key(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"doc_id": i, "text": f"t {i}"} for i in range(7)])
    out = tmp_path / "v.parquet"
    with EmulatorProcess("--latency", "0") as emu:
        conf = toml(
            tmp_path / "nightly.toml",
            f'input = ["{source}"]\noutput = "{out}"\nid-field = "doc_id"\n'
            f'base-url = "{emu.url}"\nrpm = 6000\nread-rate = 400\nquiet = true\n'
            f'api-key = "{KEY}"\n',
            mode=0o600,
        )
        shown = cli("config", "--config", conf)
        assert shown.returncode == 0, shown.stderr
        assert "api-key" in shown.stdout and KEY not in shown.stdout
        assert "set" in shown.stdout.splitlines()[-1]
        done = cli("run", "--config", conf)
        assert done.returncode == 0, done.stderr
        assert emu.stats()["jobs_created"] == 7
    assert sorted(pq.read_table(out).column("id").to_pylist()) == list(range(7))
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != conf:
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in done.stdout + done.stderr


def test_the_environment_key_beats_the_file_key(tmp_path: Path) -> None:
    conf = toml(tmp_path / "k.toml", 'api-key = "from-the-file"\n', mode=0o600)
    found = settings("--config", conf, env={"SEGMIND_API_KEY": KEY})
    assert found["api-key"] == {"value": "set", "source": "env"}
    assert KEY not in orjson.dumps(found).decode()


def test_no_input_anywhere_is_exit_2(tmp_path: Path) -> None:
    done = cli("run", "--output", tmp_path / "v.parquet", "--emulate")
    assert done.returncode == 2
    assert "no INPUT" in done.stderr and "input = [...]" in done.stderr
