"""``python -m batch_embed.emulator``: serve the emulator until interrupted.

The first line on stdout is ``listening http://HOST:PORT`` (flushed) once connections are
accepted, so a script can start it on port 0 and read where it went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError
from .config import OUTPUT_SHAPES, EmulatorConfig, parse_range, parse_rate
from .server import Emulator

T = TypeVar("T")

_EXAMPLES = """\
examples:
  # a healthy API on a free port; the first stdout line says where
  python -m batch_embed.emulator --port 0

  # a Pro plan: 50 submits a minute, reads unlimited, half the 429s with Retry-After
  python -m batch_embed.emulator --submit-limit 50/min --retry-after-rate 0.5

  # a bad day, reproducibly: cold starts, 5xx, drops, lost submits, failed jobs
  python -m batch_embed.emulator --seed 7 --latency 0.5-3 --cold-start-rate 0.03 \\
      --cold-start 10-60 --error-rate 0.02 --drop-rate 0.01 --lost-submit-rate 0.01 \\
      --fail-rate 0.01

  # benchmarks: instant jobs, no limits
  python -m batch_embed.emulator --latency 0 --port 8765

  # a fixed key and a small budget (406 once 10 submits are billed)
  python -m batch_embed.emulator --api-key sk-test --credits 0.01 --price 0.001

prompt markers (deterministic, for tests): [[blocked]], [[bad-output:nan|zeros|short|garbage]],
[[slow:SECONDS]], [[fail-submit:CODE]]; see the batch_embed.emulator docstring.

control endpoints (no key): GET /_emulator/stats, POST /_emulator/config (JSON of config
fields, e.g. {"api_key": "other", "credits": 0}), POST /_emulator/reset-stats.
"""


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Adapt a parser raising ConfigError/ValueError to argparse's error reporting."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def _rate(text: str) -> str:
    parse_rate(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    """The emulator's argument parser; every switch is a field of EmulatorConfig."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m batch_embed.emulator",
        description=(
            "A local emulator of Segmind's v2 async queue API for embedding models\n"
            "(submit, poll, fetch; v1 sync; credits), with switches for the faults a client\n"
            "must survive. Probabilities are in [0, 1]; ranges are LO-HI seconds (uniform)\n"
            "or one number; limits are N/s, N/min or N/h (a sliding window)."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    add(
        "--api-key",
        help="the only accepted x-api-key, e.g. --api-key sk-test (default: any non-empty key)",
    )
    add(
        "--latency",
        type=_typed(parse_range),
        default=defaults.latency,
        metavar="LO-HI",
        help="job latency in seconds, e.g. --latency 0.2-1.0 or --latency 0 (default: 0.2-1.0)",
    )
    add(
        "--cold-start-rate",
        type=float,
        default=defaults.cold_start_rate,
        metavar="P",
        help="probability a job first waits for a cold worker, e.g. 0.03 (default: 0)",
    )
    add(
        "--cold-start",
        type=_typed(parse_range),
        default=defaults.cold_start,
        metavar="LO-HI",
        help="extra QUEUED seconds of a cold start, e.g. --cold-start 10-60 (default: 10-60)",
    )
    for name, what in (
        ("submit", "submits (POST /v2/{slug} and /v1/{slug})"),
        ("read", "reads (status polls + result fetches)"),
        ("shared", "all API requests together"),
    ):
        add(
            f"--{name}-limit",
            type=_typed(_rate),
            metavar="N/UNIT",
            help=f"sliding-window limit on {what}, e.g. --{name}-limit 50/min (default: none)",
        )
    add(
        "--retry-after-rate",
        type=float,
        default=defaults.retry_after_rate,
        metavar="P",
        help="probability a 429 carries Retry-After (default: %(default)s)",
    )
    add(
        "--retry-after-date-rate",
        type=float,
        default=defaults.retry_after_date_rate,
        metavar="P",
        help="probability a Retry-After is an HTTP-date, not seconds, e.g. 0.3 "
        "(default: %(default)s)",
    )
    add(
        "--error-rate",
        type=float,
        default=defaults.error_rate,
        metavar="P",
        help="probability of a random 500/502/504, e.g. 0.02 (default: 0)",
    )
    add(
        "--html-error-rate",
        type=float,
        default=defaults.html_error_rate,
        metavar="P",
        help="share of injected 5xx served as a proxy's HTML page (default: %(default)s)",
    )
    add(
        "--drop-rate",
        type=float,
        default=defaults.drop_rate,
        metavar="P",
        help="probability a connection is dropped with no answer, e.g. 0.01 (default: 0)",
    )
    add(
        "--lost-submit-rate",
        type=float,
        default=defaults.lost_submit_rate,
        metavar="P",
        help="probability a submit creates and bills its job but its answer is lost "
        "(a drop or a 502), e.g. 0.01 (default: 0)",
    )
    add(
        "--fail-rate",
        type=float,
        default=defaults.fail_rate,
        metavar="P",
        help="probability a job ends FAILED (content block, 422), e.g. 0.01 (default: 0)",
    )
    add(
        "--slow-rate",
        type=float,
        default=defaults.slow_rate,
        metavar="P",
        help="probability an answer is delayed by --slow seconds, e.g. 0.05 (default: 0)",
    )
    add(
        "--slow",
        type=_typed(parse_range),
        default=defaults.slow,
        metavar="LO-HI",
        help="delay of a slow answer, e.g. --slow 1-5 (default: 1-5)",
    )
    add(
        "--retention",
        type=float,
        default=defaults.retention,
        metavar="SECONDS",
        help="seconds from submit after which status/result answer 404 (default: 3600)",
    )
    add(
        "--result-ttl",
        type=float,
        metavar="SECONDS",
        help="seconds from completion after which the result body answers 404 while status "
        "still says COMPLETED, e.g. 360 (default: same as --retention)",
    )
    add(
        "--credits",
        type=float,
        metavar="AMOUNT",
        help="paid credit balance; 406 once spent, e.g. --credits 5 (default: unlimited)",
    )
    add(
        "--free-credits",
        type=float,
        default=defaults.free_credits,
        metavar="AMOUNT",
        help="free credit balance, spent first (default: 0)",
    )
    add(
        "--price",
        type=float,
        default=defaults.price,
        metavar="AMOUNT",
        help="credits per accepted submit or sync call (default: %(default)s)",
    )
    add(
        "--output-shape",
        choices=OUTPUT_SHAPES,
        default=defaults.output_shape,
        help="how output nests the vector: openai-string = OpenAI's embeddings JSON inside "
        "a JSON string, openai-object = the same as an object, list = [floats], "
        'embedding = {"embedding": [...]}, embeddings = {"embeddings": [[...]]}, '
        'data = {"data": [[...]]} (default: %(default)s)',
    )
    add(
        "--seed",
        type=int,
        metavar="N",
        help="seed every random draw (faults, latencies, ids), e.g. --seed 7 (default: random)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig the parsed switches describe (validated)."""
    return EmulatorConfig(
        api_key=args.api_key,
        latency=args.latency,
        cold_start_rate=args.cold_start_rate,
        cold_start=args.cold_start,
        submit_limit=args.submit_limit,
        read_limit=args.read_limit,
        shared_limit=args.shared_limit,
        retry_after_rate=args.retry_after_rate,
        retry_after_date_rate=args.retry_after_date_rate,
        error_rate=args.error_rate,
        html_error_rate=args.html_error_rate,
        drop_rate=args.drop_rate,
        lost_submit_rate=args.lost_submit_rate,
        fail_rate=args.fail_rate,
        slow_rate=args.slow_rate,
        slow=args.slow,
        retention=args.retention,
        result_ttl=args.result_ttl,
        credits=args.credits,
        free_credits=args.free_credits,
        price=args.price,
        output_shape=args.output_shape,
        seed=args.seed,
    )


async def serve(config: EmulatorConfig, *, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, announcing ``listening URL`` on stdout first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Outside the main thread signals cannot be caught: Ctrl-C then stops via KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(config, host=host, port=port) as emulator:
        print(f"listening {emulator.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator CLI; returns the exit code (2: bad switches, 1: cannot bind)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as err:
        parser.error(str(err))
    try:
        asyncio.run(serve(config, host=args.host, port=args.port))
    except OSError as err:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
