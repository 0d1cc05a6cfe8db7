"""Issue 4: the API key never leaks, and it is sent only to the configured root's origin.

Every policy scenario runs with a recognisable key; then everything the run produced is
searched for it: stdout, stderr (through a terminal, so the live progress view is searched
too), the summary JSON and every file under the run's directory (output, part files, errors
output, the journal and its SQLite sidecars, and whatever landed in its HOME/TMPDIR), as
raw bytes and decoded (Parquet columns and metadata, SQLite dumps, gzip). The key is looked
for as text, UTF-16, URL-encoded, hex, base64 at every alignment and as a distinctive
12-character piece. A test API that echoes the key it receives in every error body checks
the scrubbing of server text; the Python API is checked with every log record at DEBUG.

The CLI scenarios run concurrently (one thread each, a CLI process and often an emulator
process per scenario) in a module fixture; each scenario's assertions are its own test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import io
import logging
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from batch_embed import Outcome, RunConfig, embed
from batch_embed import errors as api_errors
from batch_embed.client import SegmindClient
from batch_embed.emulator import Emulator, EmulatorConfig, expected_vector
from batch_embed.error_sink import read_errors
from batch_embed.errors import BODY_EXCERPT_CHARS, ConfigError
from batch_embed.layout import layout_for
from batch_embed.pipeline import RunResult
from batch_embed.retry import RetryPolicy
from tests.cli_fixtures import EmulatorProcess, cli_env, journal_count
from tests.pipeline_fixtures import (
    DIM,
    FAST,
    assert_vectors,
    corpus,
    output_rows,
    run_config,
    write_jsonl,
)

CANARY = "sk-LEAKCANARY-7f3a9c2e51d04b8f"
"""The key every scenario runs with."""
WRONG_CANARY = "sk-LEAKCANARY-wrong-0d9e8b7a6c5f4e3d"
"""A key the API refuses (the 401 scenarios): it must not leak either."""
KEYS = (CANARY, WRONG_CANARY)
LATENCY = "0.02-0.1"
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05, max_attempts=4, max_elapsed=20.0)
CLI_TIMEOUT = 60.0


# -- the search ------------------------------------------------------------------------


def distinctive(key: str) -> str:
    """A 12-character piece of the key's random part (found even in a cut excerpt)."""
    return key[-16:-4]


@dataclass(frozen=True, slots=True)
class Needle:
    form: str
    data: bytes
    any_case: bool = False


def needles(key: str) -> list[Needle]:
    """Every form of ``key`` searched for: plain, UTF-16, URL-encoded, hex, base64, a piece."""
    raw = key.encode()
    found = [
        Needle("the key", raw),
        Needle("the key in UTF-16", key.encode("utf-16-le")),
        Needle("the key URL-encoded", quote(key, safe="").encode()),
        Needle("the key form-encoded", quote_plus(key).encode()),
        Needle("the key in hex", raw.hex().encode(), any_case=True),
        Needle(f"the key's piece {distinctive(key)!r}", distinctive(key).encode(), any_case=True),
    ]
    for shift in range(3):
        # Base64 depends on the key's alignment in the encoded data: keep the groups that
        # hold key bytes only, for each of the three alignments.
        encoded = base64.b64encode(b"\0" * shift + raw)
        core = encoded[4 if shift else 0 : -4]
        found.append(Needle(f"the key in base64 (alignment {shift})", core))
        found.append(
            Needle(
                f"the key in URL-safe base64 (alignment {shift})",
                core.translate(bytes.maketrans(b"+/", b"-_")),
            )
        )
    unique: dict[bytes, Needle] = {}
    for needle in found:  # a key of URL-safe characters is its own URL encoding
        unique.setdefault(needle.data, needle)
    return list(unique.values())


NEEDLES = {key: needles(key) for key in KEYS}


def search(blob: bytes | str, where: str, keys: Sequence[str] = KEYS) -> list[str]:
    """One line per form of a key found in ``blob``."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    lowered = data.lower()
    hits = []
    for key in keys:
        for needle in NEEDLES.get(key) or needles(key):
            haystack, wanted = (
                (lowered, needle.data.lower()) if needle.any_case else (data, needle.data)
            )
            if wanted in haystack:
                hits.append(f"{where}: {needle.form} ({key})")
    return hits


def parquet_view(path: Path) -> str:
    """Every column but float vectors, and all metadata, as text (pages are compressed)."""
    parquet = pq.ParquetFile(path)
    parts = [str(parquet.metadata.metadata), str(parquet.schema_arrow)]
    table = parquet.read()
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind)) and pa.types.is_floating(
            kind.value_type
        ):
            continue
        parts.append(f"{name}: {column.to_pylist()!r}")
    return "\n".join(parts)


def sqlite_view(path: Path) -> str:
    """A SQL dump of a SQLite database, its WAL included, read from a copy (never in place)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.sqlite"
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        db = sqlite3.connect(copy)
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()


def decoded_views(path: Path, head: bytes) -> Iterator[tuple[str, bytes | str]]:
    """Decoded forms of a file whose raw bytes may hide a key (compression, SQLite pages)."""
    if head.startswith(b"PAR1"):
        try:
            yield "decoded Parquet", parquet_view(path)
        except (OSError, pa.ArrowException):
            # Only a part cut mid-write by an immediate exit may be unreadable.
            assert path.name.endswith(".tmp"), f"{path}: a Parquet file that does not read"
    elif head.startswith(b"\x1f\x8b"):
        yield "gunzipped", gzip.decompress(path.read_bytes())
    elif head.startswith(b"SQLite format 3\0"):
        yield "SQL dump", sqlite_view(path)


def scan_tree(root: Path, keys: Sequence[str] = KEYS) -> list[str]:
    """Search every file and directory name under ``root``, and every file's contents."""
    hits: list[str] = []
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        hits += search(name, f"the name {name}", keys)
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        hits += search(data, name, keys)
        for view, text in decoded_views(path, data[:16]):
            hits += search(text, f"{name} ({view})", keys)
    return hits


def assert_no_leak(hits: Sequence[str]) -> None:
    assert not hits, "the API key leaked:\n  " + "\n  ".join(hits)


def plant_text(root: Path) -> None:
    (root / "state" / "deep").mkdir(parents=True)
    (root / "state" / "deep" / "log.txt").write_text(f"sending x-api-key: {CANARY}\n")


def plant_name(root: Path) -> None:
    (root / f"cache-{WRONG_CANARY}.json").write_text("{}")


def plant_base64(shift: int) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        encoded = base64.urlsafe_b64encode(b"u" * shift + f":{CANARY}!".encode())
        (root / "headers.json").write_bytes(b'{"auth": "Basic ' + encoded + b'"}')

    return plant


def plant_piece(root: Path) -> None:
    (root / "errors.jsonl").write_text(f'{{"message": "body: ...{CANARY[:-4]}"}}\n')


def plant_hex(root: Path) -> None:
    (root / "dump.txt").write_text(CANARY.encode().hex().upper())


def plant_utf16(root: Path) -> None:
    (root / "win.log").write_bytes(f"key={CANARY}".encode("utf-16"))


def plant_parquet(root: Path) -> None:
    table = pa.table({"id": list(range(200)), "note": [f"row {i} {CANARY}" for i in range(200)]})
    pq.write_table(table, root / "out.parquet", compression="zstd", write_statistics=False)
    assert CANARY.encode() not in (root / "out.parquet").read_bytes()  # only decoding finds it


def plant_gzip(root: Path) -> None:
    (root / "in.jsonl.gz").write_bytes(gzip.compress(f"{CANARY}\n".encode() * 50))
    assert CANARY.encode() not in (root / "in.jsonl.gz").read_bytes()


def plant_sqlite(root: Path) -> None:
    db = sqlite3.connect(root / "journal.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(v BLOB)")
    db.execute("INSERT INTO t VALUES (?)", (gzip.compress(b"x") + CANARY.encode()[::-1],))
    db.execute("INSERT INTO t VALUES (?)", (CANARY.encode(),))
    db.commit()
    db.close()


PLANTS: dict[str, Callable[[Path], None]] = {
    "text-in-a-nested-file": plant_text,
    "a-file-name": plant_name,
    "base64-alignment-0": plant_base64(0),
    "base64-alignment-1": plant_base64(1),
    "base64-alignment-2": plant_base64(2),
    "a-12-char-piece": plant_piece,
    "hex": plant_hex,
    "utf-16": plant_utf16,
    "zstd-parquet-column": plant_parquet,
    "gzip": plant_gzip,
    "sqlite-wal": plant_sqlite,
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_the_search_finds_a_planted_key(tmp_path: Path, plant: str) -> None:
    (tmp_path / "clean.txt").write_text("nothing to see")
    PLANTS[plant](tmp_path)
    hits = scan_tree(tmp_path)
    assert hits, f"the search missed the key planted as {plant}"
    assert not any(hit.startswith("clean.txt") for hit in hits)


def test_the_search_passes_a_clean_tree(tmp_path: Path) -> None:
    """The shared prefix, other keys and real run files are not mistaken for the key."""
    (tmp_path / "notes.txt").write_text("sk-LEAKCANARY- sk-LEAKCANARY-0000000000000000 <secret>")
    pq.write_table(pa.table({"id": [1], "text_sha256": ["ab" * 32]}), tmp_path / "p.parquet")
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("CREATE TABLE t(v TEXT)")
    db.commit()
    db.close()
    assert scan_tree(tmp_path) == []


def test_the_log_check_finds_a_planted_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library").debug("headers: %r", {"x-api-key": CANARY})
    assert log_leaks(caplog.records)


# -- a test API that echoes the key it receives ---------------------------------------

_MODE = re.compile(r"echo:([a-z0-9-]+)")


def tag_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EchoApi:
    """A v2-like API (in its own thread) that puts the received key into its answers.

    The text's ``echo:MODE`` picks the answer. On submit: ``400``, ``401``, ``403``, ``404``,
    ``406``; ``drop`` (no answer); ``429-once``/``429-always``, ``500-once``/``500-always``
    (an HTML page), ``malformed-once``/``malformed-always`` (no ids); ``foreign`` (job URLs
    on another origin). On status: ``failed`` (FAILED, 422), ``badstatus`` (an unknown
    state). On result: ``garbage``, ``long`` (the key across the excerpt cut), ``zeros``.
    ``redirect-submit``, ``redirect-status``, ``redirect-result``: an HTTP redirect to
    another origin. Anything else (``ok``) succeeds with the text's emulator vector. A second
    server, the foreign origin, records every request and key it receives.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="echo-api", daemon=True)
        self.attempts: Counter[str] = Counter()
        self.jobs: dict[str, tuple[str, str]] = {}
        self.keys_seen: set[str] = set()
        self.echoed: Counter[str] = Counter()
        """Answers that carried the key back, by the text they answered for."""
        self.foreign_requests: list[tuple[str, str | None]] = []
        self.runners: list[web.AppRunner] = []
        self.url = self.foreign_url = ""

    def __enter__(self) -> EchoApi:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _start(self) -> None:
        api = web.Application()
        api.router.add_post("/v2/{slug}", self.submit)
        api.router.add_get("/v2/requests/{rid}/status", self.status)
        api.router.add_get("/v2/requests/{rid}", self.result)
        foreign = web.Application()
        foreign.router.add_route("*", "/{tail:.*}", self.foreign)
        self.url = await self._serve(api)
        self.foreign_url = await self._serve(foreign)

    async def _stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    def foreign_hits(self, text: str) -> list[tuple[str, str | None]]:
        """The requests the foreign origin got on behalf of ``text``."""
        return [hit for hit in self.foreign_requests if tag_of(text) in hit[0]]

    def _echo(self, text: str, status: int, body: dict[str, Any]) -> web.Response:
        """A JSON answer carrying the key, counted for ``text``."""
        self.echoed[text] += 1
        return web.Response(
            status=status,
            body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
            content_type="application/json",
        )

    def _key(self, request: web.Request) -> str:
        key = request.headers.get("x-api-key", "")
        self.keys_seen.add(key)
        return key

    async def submit(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        body = orjson.loads(await request.read())
        text = next(v for v in body.values() if isinstance(v, str))
        match = _MODE.search(text)
        mode = match.group(1) if match else "ok"
        self.attempts[text] += 1
        first = self.attempts[text] == 1
        tag = tag_of(text)
        if mode in ("400", "401", "403", "404", "406"):
            return self._echo(text, int(mode), {"error": f"HTTP {mode} for x-api-key {key}"})
        if mode == "429-always" or (mode == "429-once" and first):
            self.echoed[text] += 1
            return web.Response(
                status=429,
                text=f'{{"error": "Too many requests from {key}"}}',
                headers={"Retry-After": "0"},
                content_type="application/json",
            )
        if mode == "500-always" or (mode == "500-once" and first):
            self.echoed[text] += 1
            page = f"<html><body><h1>500</h1><pre>upstream said: bad key {key}</pre></body></html>"
            return web.Response(status=500, text=page, content_type="text/html")
        if mode == "malformed-always" or (mode == "malformed-once" and first):
            return self._echo(text, 200, {"accepted": True, "account": key})
        if mode == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=499)  # never sent: the connection is gone
        if mode == "redirect-submit":
            raise web.HTTPTemporaryRedirect(f"{self.foreign_url}/redirect-submit/{tag}")
        rid = f"{mode}-{tag}-{self.attempts[text]}"
        self.jobs[rid] = (mode, text)
        base = f"{self.url}/v2/requests/{rid}"
        status_url, response_url = f"{base}/status", base
        if mode == "foreign":
            status_url = f"{self.foreign_url}/{tag}/{key}/status"
            response_url = f"{self.foreign_url}/{tag}/{key}"
        return self._echo(
            text,
            200,
            {
                "request_id": rid,
                "status": "QUEUED",
                "status_url": status_url,
                "response_url": response_url,
                "account": key,
            },
        )

    def _job(self, request: web.Request) -> tuple[str, str, str, str]:
        key = self._key(request)
        rid = request.match_info["rid"]
        if rid not in self.jobs:
            raise web.HTTPNotFound(text=f'{{"error": "unknown request for {key}"}}')
        mode, text = self.jobs[rid]
        return key, rid, mode, text

    def _failed(self, text: str, rid: str, key: str) -> web.Response:
        return self._echo(
            text,
            422,
            {"status": "FAILED", "request_id": rid, "error": f"Content blocked for account {key}"},
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        key, rid, mode, text = self._job(request)
        if mode == "failed":
            return self._failed(text, rid, key)
        if mode == "badstatus":
            return self._echo(text, 200, {"status": f"WEIRD-{key}", "request_id": rid})
        if mode == "redirect-status":
            raise web.HTTPFound(f"{self.foreign_url}/redirect-status/{tag_of(text)}")
        return self._echo(
            text,
            200,
            {"status": "COMPLETED", "request_id": rid, "metrics": {"inference_time": 0.01}}
            | {"account": key},
        )

    async def result(self, request: web.Request) -> web.StreamResponse:
        key, rid, mode, text = self._job(request)
        done = {"status": "COMPLETED", "request_id": rid, "account": key}
        if mode == "failed":
            return self._failed(text, rid, key)
        if mode == "garbage":
            return self._echo(text, 200, done | {"output": f"<no vector for {key}>"})
        if mode == "long":
            # The key straddles the 200-character cut: its random part survives a cut that is
            # made before scrubbing.
            pad = "x" * (BODY_EXCERPT_CHARS - len(key) + 4)
            return self._echo(text, 200, done | {"output": f"{pad}{key}{'y' * 40}"})
        if mode == "zeros":
            return self._echo(text, 200, done | {"output": {"embedding": [0.0] * DIM, "by": key}})
        if mode == "redirect-result":
            raise web.HTTPPermanentRedirect(f"{self.foreign_url}/redirect-result/{tag_of(text)}")
        return self._echo(text, 200, done | {"output": {"embedding": expected_vector(text, DIM)}})

    async def foreign(self, request: web.Request) -> web.StreamResponse:
        self.foreign_requests.append((request.path, request.headers.get("x-api-key")))
        return web.json_response({"error": "this origin is not the API"}, status=404)


@pytest.fixture(scope="module")
def echo_api() -> Iterator[EchoApi]:
    with EchoApi() as api:
        yield api


# -- the CLI, run as a real process ----------------------------------------------------


@dataclass
class CliRun:
    """One finished ``batch-embed run`` process."""

    command: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    summary: dict[str, Any]


@dataclass
class Scenario:
    """Everything one scenario produced: its directory holds every file its runs wrote."""

    root: Path
    output: Path
    runs: list[CliRun] = field(default_factory=list)

    def errors(self) -> dict[Any, dict[str, object]]:
        path = layout_for(self.output).errors
        return {r["id"]: r for r in read_errors(path)} if path.exists() else {}

    def kinds(self) -> Counter[object]:
        return Counter(r["kind"] for r in self.errors().values())


class CliProcess:
    """``python -m batch_embed run ...`` with stderr on a terminal (or a pipe) and its own
    HOME and TMPDIR inside the scenario's directory, so every file it writes is searched."""

    def __init__(self, command: list[str], *, root: Path, key: str, tty: bool) -> None:
        env = cli_env(key)
        for name, sub in (
            ("HOME", "home"),
            ("TMPDIR", "tmp"),
            ("XDG_CACHE_HOME", "home/.cache"),
            ("XDG_CONFIG_HOME", "home/.config"),
            ("XDG_STATE_HOME", "home/.local/state"),
        ):
            (root / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(root / sub)
        self.command = command
        self.terminal: bytearray | None = None
        self.master = -1
        stderr: int = subprocess.PIPE
        if tty:
            self.master, stderr = pty.openpty()
            self.terminal = bytearray()
        self.proc = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self.finished = False
        self.reader: threading.Thread | None = None
        if tty:
            os.close(stderr)
            self.reader = threading.Thread(target=self._drain, daemon=True)
            self.reader.start()

    def _drain(self) -> None:
        assert self.terminal is not None
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the process and its terminal are gone
                return
            if not chunk:
                return
            self.terminal += chunk

    def close(self) -> None:
        """Kill and reap the process if a failed scenario left it running."""
        if not self.finished:
            self.finished = True
            self.proc.kill()
            self.proc.communicate()
            if self.reader is not None:
                self.reader.join(10)
                os.close(self.master)

    def finish(self, summary: Path) -> CliRun:
        self.finished = True
        try:
            stdout, stderr = self.proc.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            raise AssertionError(f"the CLI did not finish: {self.command}") from None
        finally:
            if self.reader is not None:
                self.reader.join(10)
                os.close(self.master)
        if self.terminal is not None:
            stderr = bytes(self.terminal)
        return CliRun(
            self.command,
            self.proc.returncode,
            stdout,
            stderr,
            orjson.loads(summary.read_bytes()) if summary.exists() else {},
        )


@dataclass
class Lab:
    """What scenarios share: a base directory, an emulator (key CANARY), the echo API."""

    base: Path
    emulator_url: str
    echo: EchoApi
    processes: list[CliProcess] = field(default_factory=list)

    def scenario(self, name: str, rows: Sequence[Any], *, output: str = "out.parquet") -> Scenario:
        root = self.base / name
        root.mkdir()
        write_jsonl(root / "in.jsonl", rows)
        return Scenario(root, root / output)

    def start(
        self,
        scenario: Scenario,
        url: str,
        *extra: str,
        key: str = CANARY,
        tty: bool = True,
        summary: str = "summary.json",
    ) -> tuple[CliProcess, Path]:
        command = [
            sys.executable,
            "-m",
            "batch_embed",
            "run",
            "in.jsonl",
            "--output",
            scenario.output.name,
            "--id-field",
            "id",
            "--base-url",
            url,
            "--rpm",
            "6000",
            "--read-rate",
            "400",
            "--summary-json",
            summary,
            *extra,
        ]
        process = CliProcess(command, root=scenario.root, key=key, tty=tty)
        self.processes.append(process)
        return process, scenario.root / summary

    def run(self, scenario: Scenario, url: str, *extra: str, **options: Any) -> CliRun:
        process, summary = self.start(scenario, url, *extra, **options)
        run = process.finish(summary)
        scenario.runs.append(run)
        return run


def wait_until(ready: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.02)


def reconfigure(url: str, **changes: object) -> None:
    request = urllib.request.Request(
        url + "/_emulator/config", data=orjson.dumps(changes), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def expect(run: CliRun, code: int) -> None:
    assert run.returncode == code, (
        f"exit {run.returncode}, expected {code}\n{run.stderr.decode(errors='replace')}"
    )


def stats_of(emulator: EmulatorProcess) -> dict[str, Any]:
    return dict(emulator.stats())


def rate_limited(stats: dict[str, Any]) -> int:
    return sum(stats["rate_limited"].values())


CLI_SCENARIOS: dict[str, Callable[[Lab], Scenario]] = {}


def cli_scenario(function: Callable[[Lab], Scenario]) -> Callable[[Lab], Scenario]:
    CLI_SCENARIOS[function.__name__.removeprefix("cli_")] = function
    return function


@cli_scenario
def cli_rejected_400(lab: Lab) -> Scenario:
    scenario = lab.scenario(
        "rejected_400", [*corpus(10), {"id": 99, "text": "[[fail-submit:400]]"}]
    )
    expect(lab.run(scenario, lab.emulator_url, tty=False), 3)
    errors = scenario.errors()
    assert list(errors) == [99] and errors[99]["kind"] == "rejected"
    assert errors[99]["http_status"] == 400
    return scenario


@cli_scenario
def cli_refused_401(lab: Lab) -> Scenario:
    scenario = lab.scenario("refused_401", corpus(5))
    run = lab.run(scenario, lab.emulator_url, key=WRONG_CANARY)
    expect(run, 4)
    assert "401" in run.summary["reason"]
    assert set(scenario.kinds()) == {"aborted"}
    return scenario


@cli_scenario
def cli_forbidden_403(lab: Lab) -> Scenario:
    rows = corpus(10)
    rows[5]["text"] = "forbidden [[fail-submit:403]]"
    scenario = lab.scenario("forbidden_403", rows)
    run = lab.run(scenario, lab.emulator_url)
    expect(run, 4)
    assert "403" in run.summary["reason"]
    return scenario


@cli_scenario
def cli_credits_406(lab: Lab) -> Scenario:
    scenario = lab.scenario("credits_406", corpus(20))
    with EmulatorProcess("--latency", LATENCY, "--credits", "0.0105") as emu:
        run = lab.run(scenario, emu.url, "--max-in-flight", "4")
    expect(run, 4)
    assert "credits ran out" in run.summary["reason"]
    assert run.summary["rows_embedded"] == 10
    return scenario


@cli_scenario
def cli_not_found_404_inside_the_hour(lab: Lab) -> Scenario:
    scenario = lab.scenario("not_found_404_inside_the_hour", corpus(10))
    # The emulator forgets jobs after 0.2 s while the run believes they have their hour.
    with EmulatorProcess("--latency", "0.4-0.5", "--retention", "0.2") as emu:
        process, summary = lab.start(scenario, emu.url)
        wait_until(lambda: stats_of(emu)["jobs_created"] > 10, "a resubmit after 404s")
        reconfigure(emu.url, retention=3600.0, latency=list(FAST))
        run = process.finish(summary)
        scenario.runs.append(run)
        stats = stats_of(emu)
    expect(run, 0)
    assert run.summary["resubmits"].get("not_found", 0) >= 1
    assert stats["requests"]["status"].get("404", 0) > 0
    return scenario


@cli_scenario
def cli_blocked_422(lab: Lab) -> Scenario:
    rows = [*corpus(10), {"id": 99, "text": "please [[blocked]]"}]
    scenario = lab.scenario("blocked_422", rows)
    expect(lab.run(scenario, lab.emulator_url), 3)
    errors = scenario.errors()
    assert list(errors) == [99] and errors[99]["kind"] == "failed"
    assert errors[99]["http_status"] == 422
    return scenario


def storm(lab: Lab, name: str, retry_after: str) -> Scenario:
    scenario = lab.scenario(name, corpus(15), output="vectors")
    switches = ("--submit-limit", "10/s", "--read-limit", "30/s", "--retry-after-rate")
    with EmulatorProcess("--latency", LATENCY, *switches, retry_after) as emu:
        run = lab.run(scenario, emu.url, "--rows-per-part", "4")
        stats = stats_of(emu)
    expect(run, 0)
    assert rate_limited(stats) > 0 and run.summary["throttled_429"] > 0
    return scenario


@cli_scenario
def cli_storm_429_without_retry_after(lab: Lab) -> Scenario:
    return storm(lab, "storm_429_without_retry_after", "0")


@cli_scenario
def cli_storm_429_with_retry_after(lab: Lab) -> Scenario:
    return storm(lab, "storm_429_with_retry_after", "1")


@cli_scenario
def cli_5xx_drops_and_lost_submits(lab: Lab) -> Scenario:
    # 32 rows: enough requests that each fault occurs (none lost in 32 submits: 0.75**32)
    scenario = lab.scenario("5xx_drops_and_lost_submits", corpus(32), output="vectors")
    faults = ("--error-rate", "0.1", "--drop-rate", "0.1", "--lost-submit-rate", "0.25")
    faults = (*faults, "--seed", "7")
    with EmulatorProcess("--latency", LATENCY, *faults) as emu:
        run = lab.run(scenario, emu.url, "--rows-per-part", "4")
        stats = stats_of(emu)
    seen: dict[str, int] = stats["faults"]
    assert seen["error"] > 0 and seen["drop"] > 0 and seen["lost_submit"] > 0, seen
    assert run.summary["retries"] > 0 and run.summary["possibly_billed_twice"] > 0
    # A row whose six tries all fail (rare) is an error row: one more path searched.
    expect(run, 3 if scenario.errors() else 0)
    assert set(scenario.kinds()) <= {"retries_exhausted"}
    return scenario


@cli_scenario
def cli_unreadable_outputs(lab: Lab) -> Scenario:
    bad = [
        {"id": 90 + i, "text": f"text {kind} [[bad-output:{kind}]]"}
        for i, kind in enumerate(("nan", "zeros", "short", "garbage"))
    ]
    scenario = lab.scenario("unreadable_outputs", [*corpus(8), *bad])
    expect(lab.run(scenario, lab.emulator_url), 3)
    assert scenario.kinds() == {"bad_output": 4}
    return scenario


@cli_scenario
def cli_bad_input_rows(lab: Lab) -> Scenario:
    rows: list[Any] = [
        *corpus(6),
        b'{"id": 50, "text": "cut off',
        b"[1, 2, 3]",
        {"id": 51},
        {"id": 52, "text": None},
        {"id": 53, "text": "   "},
        {"id": 54, "text": 42},
        b'{"id": 55, "text": "\xff\xfe not utf-8"}',
        {"id": 1, "text": "a different text for id 1"},
        {"id": 56, "text": "word " * 9000},
    ]
    scenario = lab.scenario("bad_input_rows", rows)
    expect(lab.run(scenario, lab.emulator_url, tty=False), 3)
    kinds = scenario.kinds()
    assert kinds["bad_input"] >= 6 and kinds["duplicate_id"] == 1 and kinds["too_long"] == 1
    return scenario


def interrupted_then_resumed(lab: Lab, name: str, *, twice: bool) -> Scenario:
    """SIGTERM a run with jobs in flight (``twice``: a second SIGTERM exits at once), then
    run the same command again."""
    latency = 2 if twice else 1
    rows: list[dict[str, Any]] = [
        {"id": i, "text": f"{name} row {i} [[slow:{latency}]]"} for i in range(24)
    ]
    scenario = lab.scenario(name, rows)
    process, summary = lab.start(
        scenario, lab.emulator_url, "--max-in-flight", "6", summary="summary-1.json"
    )
    wait_until(
        lambda: journal_count(scenario.output, "SELECT count(*) FROM texts WHERE state=1") >= 3,
        "jobs in flight",
    )
    time.sleep(0.6)  # the live progress line is drawn every 0.5 s
    process.proc.send_signal(signal.SIGTERM)
    if twice:
        time.sleep(0.3)
        process.proc.send_signal(signal.SIGTERM)
    first = process.finish(summary)
    scenario.runs.append(first)
    expect(first, 5)
    assert b"SIGTERM" in first.stderr and b"paid calls" in first.stderr  # the live progress
    assert (b"second signal" in first.stderr) is twice
    resumed = lab.run(scenario, lab.emulator_url, summary="summary-2.json")
    expect(resumed, 0)
    if twice:
        assert resumed.summary["reattached"] > 0  # jobs left in flight, collected by the resume
    else:
        assert first.summary["outcome"] == "interrupted" and resumed.summary["resumed_done"] > 0
    got = output_rows(layout_for(scenario.output))
    assert set(got) == {r["id"] for r in rows}
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    return scenario


@cli_scenario
def cli_sigterm_then_resume(lab: Lab) -> Scenario:
    return interrupted_then_resumed(lab, "sigterm_then_resume", twice=False)


@cli_scenario
def cli_two_sigterms_then_resume(lab: Lab) -> Scenario:
    return interrupted_then_resumed(lab, "two_sigterms_then_resume", twice=True)


ECHO_ROW_MODES = (
    "ok",
    "400",
    "failed",
    "garbage",
    "long",
    "zeros",
    "foreign",
    "429-once",
    "500-once",
    "malformed-once",
)


@cli_scenario
def cli_echoed_key_in_every_answer(lab: Lab) -> Scenario:
    echo = lab.echo
    rows: list[dict[str, Any]] = [
        {"id": i, "text": f"cli row {i} echo:{m}"} for i, m in enumerate(ECHO_ROW_MODES)
    ]
    scenario = lab.scenario("echoed_key_in_every_answer", rows)
    expect(lab.run(scenario, echo.url), 3)
    assert CANARY in echo.keys_seen
    errors = scenario.errors()
    failed = {ECHO_ROW_MODES[int(i)] for i in errors}
    assert failed == {"400", "failed", "garbage", "long", "zeros", "foreign"}, errors
    assert errors[1]["kind"] == "rejected" and errors[2]["kind"] == "failed"
    assert {errors[i]["kind"] for i in (3, 4, 5)} == {"bad_output"}
    assert all(echo.echoed[str(r["text"])] for r in rows)  # every answer had the key
    # The scrubber had work: Segmind's text is quoted, the key replaced.
    assert "<secret>" in str(errors[2]["message"]), errors[2]
    foreign_row = rows[ECHO_ROW_MODES.index("foreign")]
    assert echo.foreign_hits(str(foreign_row["text"])) == []  # never followed
    got = output_rows(layout_for(scenario.output))
    assert_vectors(got, {r["id"]: r["text"] for r in rows})
    return scenario


def echoed_abort(lab: Lab, code: str, reason: str) -> Scenario:
    rows: list[dict[str, Any]] = [{"id": i, "text": f"abort row {i} echo:{code}"} for i in range(5)]
    scenario = lab.scenario(f"echoed_key_in_a_{code}", rows)
    run = lab.run(scenario, lab.echo.url)
    expect(run, 4)
    assert reason in run.summary["reason"], run.summary
    assert lab.echo.echoed[rows[0]["text"]] > 0
    return scenario


@cli_scenario
def cli_echoed_key_in_a_401(lab: Lab) -> Scenario:
    return echoed_abort(lab, "401", "HTTP 401")


@cli_scenario
def cli_echoed_key_in_a_404_on_submit(lab: Lab) -> Scenario:
    return echoed_abort(lab, "404", "x-api-key <secret>")  # the detail is quoted, scrubbed


SLOW_SCENARIOS = frozenset(
    {
        "not_found_404_inside_the_hour",
        "two_sigterms_then_resume",
        "storm_429_with_retry_after",
        "storm_429_without_retry_after",
        "credits_406",
        "5xx_drops_and_lost_submits",
        "sigterm_then_resume",
    }
)
"""Started first: the file's run time is the longest of these."""


@pytest.fixture(scope="module")
def cli_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, echo_api: EchoApi
) -> dict[str, Future[Scenario]]:
    """Run the selected CLI scenarios concurrently; each test reads its own result."""
    wanted = {
        str(item.callspec.params["scenario"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_cli_scenario_leaks_no_key"
    }
    base = tmp_path_factory.mktemp("cli")
    with (
        EmulatorProcess("--api-key", CANARY, "--latency", LATENCY) as emu,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        lab = Lab(base, emu.url, echo_api)
        order = sorted(wanted, key=lambda name: (name not in SLOW_SCENARIOS, name))
        futures = {name: pool.submit(CLI_SCENARIOS[name], lab) for name in order}
        for future in futures.values():
            with contextlib.suppress(Exception):
                future.result(timeout=100)
        for process in lab.processes:
            process.close()
    return futures


@pytest.mark.parametrize("scenario", list(CLI_SCENARIOS))
def test_cli_scenario_leaks_no_key(cli_results: dict[str, Future[Scenario]], scenario: str) -> None:
    result = cli_results[scenario].result()  # the scenario's own assertions, re-raised here
    assert result.runs
    hits: list[str] = []
    for number, run in enumerate(result.runs, start=1):
        if b"second signal" not in run.stderr:  # the summary was printed (and is searched)
            assert b"batch-embed: rows read" in run.stderr
        hits += search(run.stdout, f"run {number}: stdout")
        hits += search(run.stderr, f"run {number}: stderr")
        hits += search(orjson.dumps(run.summary), f"run {number}: summary")
    hits += scan_tree(result.root)
    assert_no_leak(hits)
    assert layout_for(result.output).journal.exists()  # the journal was searched too


# -- the Python API, in process, with every log record at DEBUG -----------------------


def log_leaks(records: Sequence[logging.LogRecord]) -> list[str]:
    hits: list[str] = []
    for record in records:
        where = f"log record {record.name}:{record.levelname}"
        text = [record.getMessage(), repr(vars(record))]
        if record.exc_info and record.exc_info[1] is not None:
            text.append("".join(traceback.format_exception(record.exc_info[1])))
        hits += search("\n".join(text), where)
    return hits


def error_leaks(err: BaseException) -> list[str]:
    """The exception as a user can see it: str, repr, attributes, traceback with causes."""
    text = [str(err), repr(err), repr(err.args), repr(vars(err))]
    text.append("".join(traceback.format_exception(err)))
    return search("\n".join(text), f"{type(err).__name__}")


def result_leaks(result: RunResult, progress: str, tmp_path: Path) -> list[str]:
    hits = search(progress, "the progress stream")
    hits += search(f"{result!r} {result.reason} {result.stats.as_dict()}", "the RunResult")
    hits += search("\n".join(result.stats.summary_lines()), "the summary lines")
    return hits + scan_tree(tmp_path)


@dataclass(frozen=True)
class ApiCase:
    rows: list[Any]
    emulator: EmulatorConfig | None  # None: the echo API
    outcome: Outcome
    kinds: dict[str, int]
    key: str = CANARY
    overrides: dict[str, Any] = field(default_factory=dict)
    faults: tuple[str, ...] = ()
    """Emulator faults the run must have met."""


API_CASES: dict[str, ApiCase] = {
    "retries_exhausted_502": ApiCase(
        [*corpus(5), {"id": 9, "text": "x [[fail-submit:502]]"}],
        EmulatorConfig(latency=FAST),
        Outcome.ROWS_FAILED,
        {"retries_exhausted": 1},
    ),
    "dropped_connections": ApiCase(
        corpus(3),
        EmulatorConfig(latency=FAST, drop_rate=1.0),
        Outcome.ROWS_FAILED,
        {"retries_exhausted": 3},
    ),
    "transient_faults": ApiCase(
        corpus(40),  # enough submits that every fault below occurs (0.8**40: never none lost)
        EmulatorConfig(latency=FAST, error_rate=0.15, drop_rate=0.1, lost_submit_rate=0.2, seed=11),
        Outcome.COMPLETED,
        {},
        overrides={"retry": RetryPolicy(base=0.01, cap=0.05, max_attempts=12)},
        faults=("error", "error_html", "drop", "lost_submit"),
    ),
    "refused_401": ApiCase(
        corpus(4),
        EmulatorConfig(latency=FAST, api_key=CANARY),
        Outcome.ABORTED,
        {"aborted": 4},
        key=WRONG_CANARY,
    ),
    "rows_of_every_kind": ApiCase(
        [
            *corpus(4),
            {"id": 10, "text": "[[fail-submit:400]]"},
            {"id": 11, "text": "[[blocked]]"},
            {"id": 12, "text": "[[bad-output:garbage]]"},
            {"id": 13, "text": "[[bad-output:nan]]"},
            b'{"id": 14, "text": ',
            {"id": 15},
        ],
        EmulatorConfig(latency=FAST),
        Outcome.ROWS_FAILED,
        {"rejected": 1, "failed": 1, "bad_output": 2, "bad_input": 2},
    ),
    "echoed_key_in_every_answer": ApiCase(
        [
            {"id": i, "text": f"api row {i} echo:{m}"}
            for i, m in enumerate((*ECHO_ROW_MODES, "500-always", "badstatus", "malformed-always"))
        ],
        None,
        Outcome.ROWS_FAILED,
        # malformed-always: each 2xx submit answer billed a job; past --max-resubmits, lost
        {"rejected": 2, "failed": 1, "bad_output": 3, "retries_exhausted": 2, "lost": 1},
    ),
}


@pytest.mark.parametrize("case", list(API_CASES))
async def test_python_api_run_leaks_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, echo_api: EchoApi, case: str
) -> None:
    spec = API_CASES[case]
    caplog.set_level(logging.DEBUG)
    source = write_jsonl(tmp_path / "in.jsonl", spec.rows)
    progress = io.StringIO()
    settings = {"retry": FAST_RETRY, "grace_seconds": 10.0, **spec.overrides}

    async def run(url: str) -> RunResult:
        config = run_config(url, source, tmp_path / "out.parquet", key=spec.key, **settings)
        assert spec.key not in f"{config!r} {config}"
        return await embed(config, progress=progress)

    if spec.emulator is None:
        result = await run(echo_api.url)
        assert echo_api.echoed[str(spec.rows[0]["text"])] > 0
    else:
        async with Emulator(spec.emulator) as emu:
            result = await run(emu.url)
            faults = emu.stats()["faults"]
        assert all(faults[name] > 0 for name in spec.faults), faults
    assert result.outcome is spec.outcome, result.reason
    kinds = Counter(r["kind"] for r in read_errors(result.layout.errors))
    assert kinds == spec.kinds
    assert_no_leak(log_leaks(caplog.records) + result_leaks(result, progress.getvalue(), tmp_path))


async def test_404_after_the_hour_leaks_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rows = corpus(6)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    short = {"retention": 0.5, "retention_margin": 0.1, "retry": FAST_RETRY}
    async with Emulator(EmulatorConfig(latency=(0.8, 0.9), retention=0.5)) as emu:
        config = run_config(emu.url, source, tmp_path / "out.parquet", key=CANARY, **short)
        task = asyncio.create_task(embed(config))
        while emu.stats()["jobs_created"] <= len(rows):
            await asyncio.sleep(0.02)
        emu.update(latency=FAST)
        result = await task
    assert result.outcome is Outcome.COMPLETED
    assert result.stats.resubmits["expired"] >= 1
    assert_no_leak(log_leaks(caplog.records) + result_leaks(result, "", tmp_path))


def test_the_key_is_in_no_repr_or_config_error(tmp_path: Path) -> None:
    config = RunConfig(inputs=("in.jsonl",), output=tmp_path / "o.parquet", api_key=CANARY)
    client = SegmindClient(api_key=CANARY, base_url="http://127.0.0.1:9")
    hits = search(f"{config!r} {config} {client!r} {client} {vars(client)!r}", "a repr")
    bad_configs: list[Callable[[], object]] = [
        lambda: RunConfig(inputs=("in.jsonl",), output=tmp_path, api_key=CANARY, rpm=-1.0),
        lambda: SegmindClient(api_key=CANARY, base_url=f"https://user:{CANARY}@api.segmind.com"),
        lambda: SegmindClient(api_key=CANARY, base_url=f"https://api.segmind.com/?key={CANARY}"),
        lambda: SegmindClient(api_key=CANARY, max_connections=0),
    ]
    for make in bad_configs:
        with pytest.raises(ConfigError) as raised:
            make()
        hits += error_leaks(raised.value)
    assert_no_leak(hits)


CLIENT_ERRORS: dict[str, tuple[str, type[api_errors.ApiError] | None]] = {
    # mode: (the call that meets the echo, the error it raises; None: an answer)
    "400": ("submit", api_errors.BadRequest),
    "401": ("submit", api_errors.AuthError),
    "403": ("submit", api_errors.Forbidden),
    "404": ("submit", api_errors.NotFound),
    "406": ("submit", api_errors.InsufficientCredits),
    "429-always": ("submit", api_errors.RateLimited),
    "500-always": ("submit", api_errors.ServerError),
    "malformed-always": ("submit", api_errors.MalformedResponse),
    "foreign": ("submit", api_errors.ForeignOrigin),
    "drop": ("submit", api_errors.ConnectionDropped),
    "failed": ("status", None),
    "badstatus": ("status", api_errors.MalformedResponse),
    "garbage": ("result", api_errors.BadVector),
    "long": ("result", api_errors.BadVector),
    "zeros": ("result", api_errors.BadVector),
}


@pytest.mark.parametrize("mode", list(CLIENT_ERRORS))
async def test_client_errors_carry_no_echoed_key(echo_api: EchoApi, mode: str) -> None:
    """The echo API puts the key in its answer; what the client raises never holds it."""
    call, expected = CLIENT_ERRORS[mode]
    text = f"client {mode} {time.monotonic_ns()} echo:{mode}"
    hits: list[str] = []
    async with SegmindClient(api_key=CANARY, base_url=echo_api.url) as client:
        try:
            job = await client.submit(text)
            answer: object = await (client.status(job) if call == "status" else client.result(job))
        except api_errors.ApiError as err:
            assert expected is not None and type(err) is expected, repr(err)
            hits += error_leaks(err)
        else:
            assert expected is None, f"no error, got {answer!r}"
            assert call == "status" and mode == "failed"
            error = getattr(answer, "error", None)
            assert error is not None and "<secret>" in error
            hits += search(f"{error} {answer!r}", "the JobStatus")
        if mode == "failed":  # the result of a FAILED job raises JobFailed with the same text
            with pytest.raises(api_errors.JobFailed) as failed:
                await client.result(job)
            hits += error_leaks(failed.value)
    if mode != "drop":
        assert echo_api.echoed[text] > 0  # the key was in the answer: scrubbing was needed
    assert_no_leak(hits)


@pytest.mark.parametrize("endpoint", ["submit", "status", "result"])
async def test_a_redirect_never_carries_the_key_to_another_origin(
    echo_api: EchoApi, endpoint: str
) -> None:
    """The key goes only to the configured root's origin: an HTTP redirect elsewhere is not
    followed with it (aiohttp follows redirects and keeps custom headers by default)."""
    text = f"redirect {endpoint} {time.monotonic_ns()} echo:redirect-{endpoint}"
    async with SegmindClient(api_key=CANARY, base_url=echo_api.url) as client:
        with contextlib.suppress(api_errors.ApiError):
            job = await client.submit(text)
            if endpoint == "status":
                await client.status(job)
            elif endpoint == "result":
                await client.result(job)
    leaked = [path for path, key in echo_api.foreign_hits(text) if key]
    assert leaked == [], f"x-api-key sent to another origin ({echo_api.foreign_url}): {leaked}"
