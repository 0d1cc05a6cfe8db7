"""``batch-embed run`` settings that cannot work are refused before anything starts (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_embed.cli import EXIT_USAGE, main
from tests.pipeline_fixtures import corpus, write_jsonl


@pytest.mark.parametrize(
    ("extra", "env_key", "message"),
    [
        (
            ["--emulate", "--shared-limit", "--read-rate", "5"],
            None,
            "--shared-limit and --read-rate conflict",
        ),
        (["--rpm", "50"], None, "no API key: set SEGMIND_API_KEY"),
        (["--emulate", "--base-url", "http://127.0.0.1:9"], None, "--emulate and --base-url"),
        (
            ["--base-url", "http://api.example.com"],
            "sk-cli-test-0123456789",
            "plain http is allowed only for loopback",
        ),
    ],
    ids=["shared-limit-with-read-rate", "no-key", "emulate-with-base-url", "plain-http"],
)
def test_settings_that_cannot_work_exit_2_naming_the_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    env_key: str | None,
    message: str,
) -> None:
    if env_key is None:
        monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    else:
        monkeypatch.setenv("SEGMIND_API_KEY", env_key)
    source = write_jsonl(tmp_path / "in.jsonl", corpus(3))
    out = tmp_path / "out.parquet"
    code = main(["run", str(source), "--output", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert message in err
    assert "Traceback" not in err
    assert env_key is None or env_key not in err
    assert not out.exists()


def test_help_documents_the_shared_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--shared-limit" in capsys.readouterr().out
