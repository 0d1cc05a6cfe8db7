"""The command's entry point holds SIGINT/SIGTERM back while the CLI's heavy modules load."""

from __future__ import annotations

import signal
import sys
import types
from collections.abc import Sequence

import pytest

from batch_embed import cli, entry


class LoadingCli(types.ModuleType):
    """Stands in for ``batch_embed.cli`` while it loads: SIGINT arrives halfway."""

    def __init__(self) -> None:
        super().__init__("batch_embed.cli")
        self.loaded = False
        self.ran = False

    def __getattr__(self, name: str) -> object:
        signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C during the import
        self.loaded = True  # ... which must not be cut short

        def main(argv: Sequence[str] | None = None) -> int:
            self.ran = True
            return 0

        return main


def test_sigint_while_the_cli_loads_is_held_until_it_has_loaded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loading = LoadingCli()
    monkeypatch.setitem(sys.modules, "batch_embed.cli", loading)
    before = signal.getsignal(signal.SIGTERM)
    assert entry.main(["run", "x.jsonl", "--output", "o.parquet"]) == entry.EXIT_INTERRUPTED
    assert loading.loaded  # the import finished; the signal came after it
    assert not loading.ran  # ... and before the run started
    assert "batch-embed: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # the SIGTERM handler is put back
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_the_entry_and_the_cli_agree_on_the_interrupted_exit_code() -> None:
    assert entry.EXIT_INTERRUPTED == cli.EXIT_INTERRUPTED == 5


def test_importing_the_package_loads_none_of_the_heavy_modules() -> None:
    import subprocess

    code = (
        "import sys, batch_embed, batch_embed.entry; "
        "print(sorted(m for m in ('numpy', 'pyarrow', 'aiohttp') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
