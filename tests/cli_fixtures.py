"""Helpers for tests that run the real CLI: an emulator process, the environment, the journal."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson

from batch_embed.layout import layout_for

FAST = ("--rpm", "6000", "--read-rate", "400")
"""Budgets far above what a test's emulator needs: the run is not slowed by them."""


def batch_embed_cli(verb: str, *args: str | Path) -> list[str]:
    """``python -m batch_embed VERB ARGS...`` (paths as text)."""
    return [sys.executable, "-m", "batch_embed", verb, *map(str, args)]


def cli_command(source: Path, out: Path, url: str, summary: Path | None, *extra: str) -> list[str]:
    """``python -m batch_embed run`` on ``source`` against ``url``, quiet, ids from ``id``."""
    return [
        sys.executable,
        "-m",
        "batch_embed",
        "run",
        str(source),
        "--output",
        str(out),
        "--id-field",
        "id",
        "--base-url",
        url,
        "--quiet",
        *(["--summary-json", str(summary)] if summary is not None else []),
        *extra,
    ]


class EmulatorProcess:
    """``python -m batch_embed.emulator --port 0`` in a subprocess; ``url`` once listening."""

    def __init__(self, *switches: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batch_embed.emulator", "--port", "0", *switches],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.url + "/_emulator/stats", timeout=10) as answer:
            result: dict[str, object] = orjson.loads(answer.read())
            return result

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def cli_env(key: str) -> dict[str, str]:
    env = dict(os.environ)
    env["SEGMIND_API_KEY"] = key
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(command: list[str], key: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a CLI command to its end with ``key`` in the environment; capture its output."""
    return subprocess.run(
        command, env=cli_env(key), capture_output=True, text=True, timeout=timeout
    )


def journal_count(output: Path, sql: str) -> int:
    path = layout_for(output).journal
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
