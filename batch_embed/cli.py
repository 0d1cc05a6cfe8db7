"""The ``batch-embed`` command: flags and environment -> RunConfig -> one library call.

Exit codes (also in ``--help`` and the README)::

    0  every row read was embedded (or skipped: already done, or a repeated id)
    1  internal error: a bug (the ledger did not balance, or an unexpected exception)
    2  could not start: a usage error, a bad setting, a bad input file, a locked output
    3  the run finished, but some rows failed: they are in the errors output
    4  the API stopped the run: key refused (401/403), credits spent (406), unknown model
    5  interrupted by SIGINT/SIGTERM; what was collected is written; re-run to resume
    6  stopped at the submit cap (--max-submits, --max-cost); re-run to continue
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

from . import loop as event_loop
from .cli_args import build_parser
from .client import API_KEY_ENV, DEFAULT_ROOT
from .config import DEFAULT_READ_RATE, DEFAULT_RPM, RunConfig
from .errors import BatchEmbedError, ConfigError, InputError, JournalLocked
from .interrupts import interruptible
from .pipeline import Outcome, embed
from .plan import make_plan
from .report import report_plan, report_run

(
    EXIT_OK,
    EXIT_BUG,
    EXIT_USAGE,
    EXIT_ROWS_FAILED,
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_CAPPED,
) = range(7)
EXIT_CODES = {
    Outcome.COMPLETED: EXIT_OK,
    Outcome.ROWS_FAILED: EXIT_ROWS_FAILED,
    Outcome.ABORTED: EXIT_ABORTED,
    Outcome.INTERRUPTED: EXIT_INTERRUPTED,
    Outcome.CAPPED: EXIT_CAPPED,
    Outcome.LEDGER_MISMATCH: EXIT_BUG,
}

EMULATE_SUBMIT_LIMIT = "50/s"
EMULATE_READ_LIMIT = "100/s"
EMULATE_KEY = "emulator-key"


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
        if args.command == "plan":
            return await _plan(args)
        async with _api(args) as (base_url, api_key, rpm, read_rate):
            config = _config(args, base_url=base_url, api_key=api_key, rpm=rpm, read_rate=read_rate)
            stop = asyncio.Event()
            _install_signals(stop)
            result = await embed(config, stop=stop, progress=None if args.quiet else sys.stderr)
    except (ConfigError, InputError, JournalLocked) as err:
        print(f"batch-embed: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BatchEmbedError as err:
        print(f"batch-embed: error: {err}", file=sys.stderr)
        return EXIT_BUG
    report_run(result, args.summary_json)
    return EXIT_CODES[result.outcome]


async def _plan(args: argparse.Namespace) -> int:
    """``plan``: the run's settings, no emulator, no key, no request; print what it would pay."""
    _check_conflicts(args)
    if args.emulate and args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    rpm, read_rate = _emulated_budget(args) if args.emulate else _real_budget(args)
    config = _config(
        args, base_url=args.base_url or DEFAULT_ROOT, api_key=None, rpm=rpm, read_rate=read_rate
    )
    plan = await asyncio.to_thread(make_plan, config)
    report_plan(plan, config.output, config.rpm, args.summary_json)
    return EXIT_OK


def _config(
    args: argparse.Namespace, *, base_url: str, api_key: str | None, rpm: float, read_rate: float
) -> RunConfig:
    """The RunConfig the flags describe (the API's address, key and budgets resolved)."""
    return RunConfig(
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
        max_submits=args.max_submits,
        price_per_call=args.price_per_call,
        max_cost=args.max_cost,
        max_resubmits=args.max_resubmits,
        max_answer_bytes=args.max_answer_bytes,
        retry_failed=args.retry_failed,
        prune=args.prune,
        **({"rows_per_part": args.rows_per_part} if args.rows_per_part else {}),
    )


def _check_conflicts(args: argparse.Namespace) -> None:
    if args.shared_limit and args.read_rate is not None:
        raise ConfigError(
            "--shared-limit and --read-rate conflict: with a shared limit, polls and fetches "
            "use the --rpm budget"
        )
    if args.max_cost is not None and args.price_per_call is None:
        raise ConfigError("--max-cost needs --price-per-call (what one submit costs)")


def _real_budget(args: argparse.Namespace) -> tuple[float, float]:
    return args.rpm or DEFAULT_RPM, args.read_rate or DEFAULT_READ_RATE


def _emulated_budget(args: argparse.Namespace) -> tuple[float, float]:
    """The budgets against the built-in emulator: its own limits unless the flags say."""
    from .emulator import parse_rate

    count, window = parse_rate(EMULATE_SUBMIT_LIMIT)
    read_count, read_window = parse_rate(EMULATE_READ_LIMIT)
    return args.rpm or count / window * 60.0, args.read_rate or read_count / read_window


@contextlib.asynccontextmanager
async def _api(args: argparse.Namespace) -> AsyncIterator[tuple[str, str | None, float, float]]:
    """Yield (base_url, key, rpm, read_rate): the real API, or a started emulator."""
    _check_conflicts(args)
    if not args.emulate:
        if not os.environ.get(API_KEY_ENV):
            raise ConfigError(
                f"no API key: set {API_KEY_ENV}=<your key> (https://cloud.segmind.com), or add "
                "--emulate to try batch-embed against its built-in emulator"
            )
        yield (args.base_url or DEFAULT_ROOT, None, *_real_budget(args))
        return
    if args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    from .emulator import Emulator, EmulatorConfig

    emulator_config = EmulatorConfig(
        submit_limit=EMULATE_SUBMIT_LIMIT, read_limit=EMULATE_READ_LIMIT
    )
    async with Emulator(emulator_config) as emulator:
        print(f"batch-embed: emulator listening on {emulator.url}", file=sys.stderr)
        yield (emulator.url, EMULATE_KEY, *_emulated_budget(args))


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
