"""The ``batch-embed`` command: flags and environment -> RunConfig -> one library call.

Exit codes (also in ``--help`` and the README)::

    0  every row read was embedded (or skipped: already done, or a repeated id)
    1  internal error: a bug (the ledger did not balance, or an unexpected exception)
    2  could not start: a usage error, a bad setting, a bad input file, a locked output
    3  the run finished, but some rows failed: they are in the errors output
    4  the API stopped the run: key refused (401/403), credits spent (406), unknown model
    5  interrupted by SIGINT/SIGTERM; what was collected is written; re-run to resume
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson

from . import __version__
from . import loop as event_loop
from .client import API_KEY_ENV, DEFAULT_ROOT
from .config import DEFAULT_MAX_IN_FLIGHT, DEFAULT_READ_RATE, DEFAULT_RPM, RunConfig
from .error_sink import iter_errors
from .errors import BatchEmbedError, ConfigError, InputError, JournalLocked
from .interrupts import interruptible
from .models import DEFAULT_MODEL, MODELS
from .pipeline import Outcome, RunResult, embed

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_ROWS_FAILED, EXIT_ABORTED, EXIT_INTERRUPTED = range(6)
EXIT_CODES = {
    Outcome.COMPLETED: EXIT_OK,
    Outcome.ROWS_FAILED: EXIT_ROWS_FAILED,
    Outcome.ABORTED: EXIT_ABORTED,
    Outcome.INTERRUPTED: EXIT_INTERRUPTED,
    Outcome.LEDGER_MISMATCH: EXIT_BUG,
}

EMULATE_SUBMIT_LIMIT = "50/s"
EMULATE_READ_LIMIT = "100/s"
EMULATE_KEY = "emulator-key"
SHOWN_ERRORS = 5
"""How many row errors the end-of-run report quotes (the rest are in the errors output)."""
SCANNED_ERRORS = 10_000

RUN_EPILOG = f"""\
examples:
  batch-embed run sample_data/ --output out/vectors.parquet --emulate
  SEGMIND_API_KEY=... batch-embed run corpus/*.jsonl.gz --output vectors/ --rpm 50
  batch-embed run docs.parquet --text-field body --id-field meta.doc_id --output v.parquet

The API key comes from ${API_KEY_ENV}. Output: a .parquet file, or a directory of part
files; columns id, embedding (fixed_size_list<float32>[dim]), text_sha256. Rows that could
not be embedded go to <output>.errors.jsonl (or --errors). The run's journal lives in
<output>.batch_embed/: running the same command again resumes (skips committed rows,
re-attaches to jobs submitted within the hour); --fresh starts over.

exit codes:
  0  every row embedded (or skipped)      3  some rows failed (see the errors output)
  1  internal error (a bug)               4  the API stopped the run (401/403/406/model)
  2  usage error, bad input or setting    5  interrupted (SIGINT/SIGTERM); re-run resumes
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``batch-embed`` argument parser (``run`` and ``emulator`` subcommands)."""
    parser = argparse.ArgumentParser(
        prog="batch-embed",
        description="Embed whole corpora through Segmind's v2 queue API into Parquet.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="embed JSONL/Parquet inputs into a Parquet output",
        description="Embed every row of the inputs into a Parquet output.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=".jsonl/.ndjson (optionally .gz), .parquet, a directory or a glob",
    )
    run.add_argument(
        "--output",
        "-o",
        required=True,
        type=Path,
        metavar="OUT",
        help="a .parquet file, or a directory that receives part files",
    )
    run.add_argument(
        "--text-field",
        default="text",
        help="the text's key or column; dotted paths reach into nested JSON (default: text)",
    )
    run.add_argument(
        "--id-field",
        default=None,
        help="the row key's field (default: derived from file and line/row)",
    )
    run.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(MODELS),
        help=f"the model slug (default: {DEFAULT_MODEL})",
    )
    run.add_argument("--base-url", default=None, help=f"the API root (default: {DEFAULT_ROOT})")
    run.add_argument(
        "--rpm",
        type=_positive_float,
        default=None,
        help=f"submits per minute: your plan's rate limit (default: {DEFAULT_RPM:g}"
        "; with --emulate, the emulator's limit)",
    )
    run.add_argument(
        "--read-rate",
        type=_positive_float,
        default=None,
        help="status polls + result fetches per second (default: "
        f"{DEFAULT_READ_RATE:g}; with --emulate, the emulator's limit)",
    )
    run.add_argument(
        "--shared-limit",
        action="store_true",
        help="your plan's --rpm counts every request, status polls and result fetches too: "
        "one budget for all (--read-rate is then not used)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="one HTTP request may take this long in all; a timeout is retried like a 5xx "
        "(default: 60)",
    )
    run.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help=f"texts submitted and not yet written, at most (default: {DEFAULT_MAX_IN_FLIGHT})",
    )
    run.add_argument(
        "--errors",
        type=Path,
        default=None,
        metavar="PATH",
        help="the errors output (JSONL; default: <output>.errors.jsonl)",
    )
    run.add_argument(
        "--truncate",
        action="store_true",
        help="cut texts over the model's token limit instead of failing them",
    )
    run.add_argument(
        "--fresh", action="store_true", help="forget earlier runs on this output and start over"
    )
    run.add_argument(
        "--emulate",
        action="store_true",
        help="run against the built-in emulator on a free loopback port (no key)",
    )
    run.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain-http --base-url that is not a loopback address",
    )
    run.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the end-of-run summary as JSON",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no progress view")
    # Advanced, hidden: the size of the committed parts (tests, tuning).
    run.add_argument("--rows-per-part", type=_positive_int, default=None, help=argparse.SUPPRESS)
    sub.add_parser(
        "emulator", help="serve the built-in API emulator (see: emulator --help)", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``batch-embed`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from .emulator.cli import main as emulator_main

        return emulator_main(args_list[1:])
    # Until the run installs its own handlers (after --emulate's emulator has started),
    # SIGTERM acts as SIGINT: the runner cancels the start cleanly, and the exit code is 5.
    return interruptible(lambda: event_loop.run(_run(build_parser().parse_args(args_list))))


async def _run(args: argparse.Namespace) -> int:
    try:
        async with _api(args) as (base_url, api_key, rpm, read_rate):
            config = RunConfig(
                inputs=tuple(args.inputs),
                output=args.output,
                errors=args.errors,
                text_field=args.text_field,
                id_field=args.id_field,
                model=args.model,
                base_url=base_url,
                api_key=api_key,
                rpm=rpm,
                read_rate=read_rate,
                shared_limit=args.shared_limit,
                request_timeout=args.timeout,
                max_in_flight=args.max_in_flight,
                truncate=args.truncate,
                fresh=args.fresh,
                allow_insecure_http=args.allow_insecure_http,
                **({"rows_per_part": args.rows_per_part} if args.rows_per_part else {}),
            )
            stop = asyncio.Event()
            _install_signals(stop)
            result = await embed(config, stop=stop, progress=None if args.quiet else sys.stderr)
    except (ConfigError, InputError, JournalLocked) as err:
        print(f"batch-embed: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BatchEmbedError as err:
        print(f"batch-embed: error: {err}", file=sys.stderr)
        return EXIT_BUG
    _report(result, args.summary_json)
    return EXIT_CODES[result.outcome]


@contextlib.asynccontextmanager
async def _api(args: argparse.Namespace) -> AsyncIterator[tuple[str, str | None, float, float]]:
    """Yield (base_url, key, rpm, read_rate): the real API, or a started emulator."""
    if args.shared_limit and args.read_rate is not None:
        raise ConfigError(
            "--shared-limit and --read-rate conflict: with a shared limit, polls and fetches "
            "use the --rpm budget"
        )
    if not args.emulate:
        if not os.environ.get(API_KEY_ENV):
            raise ConfigError(
                f"no API key: set {API_KEY_ENV}=<your key> (https://cloud.segmind.com), or add "
                "--emulate to try batch-embed against its built-in emulator"
            )
        yield (
            args.base_url or DEFAULT_ROOT,
            None,
            args.rpm or DEFAULT_RPM,
            args.read_rate or DEFAULT_READ_RATE,
        )
        return
    if args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    from .emulator import Emulator, EmulatorConfig, parse_rate

    emulator_config = EmulatorConfig(
        submit_limit=EMULATE_SUBMIT_LIMIT, read_limit=EMULATE_READ_LIMIT
    )
    count, window = parse_rate(EMULATE_SUBMIT_LIMIT)
    read_count, read_window = parse_rate(EMULATE_READ_LIMIT)
    async with Emulator(emulator_config) as emulator:
        print(f"batch-embed: emulator listening on {emulator.url}", file=sys.stderr)
        yield (
            emulator.url,
            EMULATE_KEY,
            args.rpm or count / window * 60.0,
            args.read_rate or read_count / read_window,
        )


def _install_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM: stop and collect; a second one: exit at once.

    A signal that came before these handlers was already handled: it cancelled the run (the
    runner's own SIGINT handling). uvloop delivers it to them as well, once they are in
    place; a run already being cancelled ignores it.
    """
    loop = asyncio.get_running_loop()
    run = asyncio.current_task()

    def handle(signum: int) -> None:
        if run is not None and run.cancelling():
            return
        if stop.is_set():
            print("\nbatch-embed: second signal, exiting now", file=sys.stderr)
            os._exit(EXIT_INTERRUPTED)
        print(
            f"\nbatch-embed: {signal.Signals(signum).name}: stopping; collecting jobs in "
            "flight (again to exit at once)",
            file=sys.stderr,
        )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, handle, signum)


def _first_errors(path: Path, limit: int) -> list[str]:
    """The messages of the first ``limit`` row errors (aborted rows left out: the reason is
    printed once), each naming its file and line or row; best effort, never raises."""
    shown: list[str] = []
    try:
        for number, record in enumerate(iter_errors(path)):
            if len(shown) >= limit or number >= SCANNED_ERRORS:
                break
            if record.get("kind") == "aborted":
                continue
            source, location = record.get("source"), record.get("location")
            message = str(record.get("message"))
            if not message.startswith(f"{source}, "):
                message = f"{source}, {location}: {message}"
            shown.append(message)
    except (OSError, InputError):  # a damaged errors file: show what was read
        pass
    return shown


def _report(result: RunResult, summary_json: Path | None) -> None:
    stats = result.stats
    out = sys.stderr
    for line in stats.summary_lines():
        print(f"batch-embed: {line}", file=out)
    layout = result.layout
    if stats.rows_failed:
        for line in _first_errors(layout.errors, SHOWN_ERRORS):
            print(f"batch-embed: failed: {line}", file=out)
    print(f"batch-embed: output {layout.output}; errors {layout.errors}", file=out)
    if result.reason:
        print(f"batch-embed: run stopped: {result.reason}", file=out)
    if result.outcome is Outcome.INTERRUPTED:
        print("batch-embed: interrupted; run the same command again to resume", file=out)
    if result.outcome is Outcome.LEDGER_MISMATCH:
        print(
            f"batch-embed: BUG: the ledger does not balance for {stats.unbalanced}: "
            "rows read != embedded + failed + skipped; please report it",
            file=out,
        )
    if summary_json is not None:
        summary = stats.as_dict() | {"outcome": result.outcome.value, "reason": result.reason}
        summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
