"""The ``batch-embed`` command: flags and environment -> RunConfig -> one library call.

Exit codes (also in ``--help`` and the README)::

    0  every row read was embedded (or skipped: already done, or a repeated id)
    1  internal error: a bug (the ledger did not balance, or an unexpected exception)
    2  could not start: a usage error, a bad setting, a bad input file, a locked output
    3  the run finished, but some rows failed: they are in the errors output
    4  the API stopped the run: key refused (401/403), credits spent (406), unknown model
    5  interrupted by SIGINT/SIGTERM; what was collected is written; re-run to resume
    6  stopped at the submit cap (--max-submits, --max-cost); re-run to continue
    7  could not write (disk full, I/O error): free space and run again

Every flag may also come from the environment or a config file (:mod:`.settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from . import loop as event_loop
from .api_root import DEFAULT_ROOT
from .cli_args import DEFAULT_RAY_WORKERS, build_parser
from .client import API_KEY_ENV
from .config import DEFAULT_READ_RATE, DEFAULT_RPM, RunConfig
from .credit_check import check_before_paying, show_for_plan
from .errors import BatchEmbedError, ConfigError, InputError, JournalLocked, WriteFailed
from .interrupts import interruptible
from .log import LOG_FORMATS, Log, LogFormat
from .pipeline import Outcome, embed
from .plan import make_plan
from .report import report_plan, report_run, report_settings, report_status
from .settings import env_name, resolve, without_defaults
from .status import read_status

(
    EXIT_OK,
    EXIT_BUG,
    EXIT_USAGE,
    EXIT_ROWS_FAILED,
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_CAPPED,
    EXIT_WRITE_FAILED,
) = range(8)
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
    return interruptible(lambda: _then(event_loop.run(_run(args_list))))


def _then(result: int | Callable[[], int]) -> int:
    """The exit code, or what is left to do outside the event loop (``--engine ray``)."""
    return result if isinstance(result, int) else result()


async def _run(argv: list[str]) -> int | Callable[[], int]:
    log = Log(_log_format_hint(argv, os.environ))  # until the settings are read
    try:
        parsed = build_parser().parse_args(argv)
        if parsed.command == "status":  # reads what a run wrote: no settings of its own
            status = read_status(parsed.output, state_dir=parsed.state_dir)
            report_status(status, json_output=parsed.json)
            return EXIT_OK
        settings = resolve(build_parser(), without_defaults(build_parser()), argv, os.environ)
        args = settings.args
        log = Log(args.log_format)
        if args.command == "config":
            report_settings(settings, json_output=args.json)
            return EXIT_OK
        _check_required(args)
        if _on_ray_engine(args):
            if args.command == "plan":
                raise ConfigError(
                    "plan does not know --engine ray: a ray run pays only for "
                    "the rows its output does not hold yet"
                )
            # Ray blocks: it runs after the event loop, where Ctrl-C is a KeyboardInterrupt.
            return functools.partial(_run_on_ray, args, settings.sources, settings.api_key, log)
        if args.workers is not None:
            raise ConfigError("--workers is for --engine ray (the local engine: --max-in-flight)")
        if args.command == "plan":
            return await _plan(args, settings.api_key, log)
        async with _api(args, settings.api_key, log) as (base_url, api_key, rpm, read_rate):
            config = _config(args, base_url=base_url, api_key=api_key, rpm=rpm, read_rate=read_rate)
            stop = asyncio.Event()
            _install_signals(stop, log)
            result = await embed(
                config,
                stop=stop,
                progress=None if args.quiet and not log.json else log,
                log_every=args.log_every,
                before_paying=functools.partial(
                    check_before_paying, config, log, quiet=args.quiet, yes=args.yes
                ),
            )
        report_run(result, args.summary_json, log)
    except BatchEmbedError as err:
        return _exit_for(err, log)
    return EXIT_CODES[result.outcome]


def _exit_for(err: BatchEmbedError, log: Log) -> int:
    """Say why the run could not start or go on; its exit code."""
    if isinstance(err, ConfigError | InputError | JournalLocked):
        log.error(str(err), event="refused")
        return EXIT_USAGE
    if isinstance(err, WriteFailed):
        log.error(f"{err}; free space and run again", event="write_failed", path=err.path)
        return EXIT_WRITE_FAILED
    log.error(str(err))
    return EXIT_BUG


def _on_ray_engine(args: argparse.Namespace) -> bool:
    return bool(args.engine == "ray" or args.ray_address is not None)


def _run_on_ray(
    args: argparse.Namespace, sources: Mapping[str, str], api_key: str | None, log: Log
) -> int:
    """``run --engine ray`` (:mod:`batch_embed.ray.cli_run`, imported only here)."""
    try:
        try:
            from .ray import cli_run
        except ImportError as err:
            if (err.name or "").partition(".")[0] != "ray":
                raise
            raise ConfigError("--engine ray needs `pip install 'batch_embed[ray]'`") from None
        cli_run.refuse_flags(sources)
        if args.workers is None:
            args.workers = DEFAULT_RAY_WORKERS
        with _ray_api(args, api_key, log) as api:
            outcome = cli_run.run(args, cli_run.Api(**api), log)
    except BatchEmbedError as err:
        return _exit_for(err, log)
    return EXIT_CODES[outcome]


@contextlib.contextmanager
def _ray_api(args: argparse.Namespace, api_key: str | None, log: Log) -> Iterator[dict[str, Any]]:
    """:func:`_api` for a run outside the event loop: the emulator on a thread of its own."""
    _check_conflicts(args)
    if not args.emulate:
        key = _require_key(api_key)
        rpm, read_rate = _real_budget(args)
        yield {
            "base_url": args.base_url or DEFAULT_ROOT,
            "api_key": key,
            "rpm": rpm,
            "read_rate": read_rate,
        }
        return
    if args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    if args.ray_address is not None:
        raise ConfigError(
            "--emulate and --ray-address conflict: the emulator listens on this machine's "
            "loopback, which the cluster's workers cannot reach"
        )
    from .emulator import EmulatorConfig, EmulatorThread

    emulator_config = EmulatorConfig(
        submit_limit=EMULATE_SUBMIT_LIMIT, read_limit=EMULATE_READ_LIMIT
    )
    with EmulatorThread(emulator_config) as emulator:
        log.info(f"emulator listening on {emulator.url}", event="emulator", url=emulator.url)
        rpm, read_rate = _emulated_budget(args)
        yield {"base_url": emulator.url, "api_key": EMULATE_KEY, "rpm": rpm, "read_rate": read_rate}


def _log_format_hint(argv: Sequence[str], environ: Mapping[str, str]) -> LogFormat:
    """The log format asked for, read before the settings are (so that their errors obey)."""
    for index, word in enumerate(argv):
        value = argv[index + 1] if word == "--log-format" and index + 1 < len(argv) else None
        if word.startswith("--log-format="):
            value = word.split("=", 1)[1]
        if value in LOG_FORMATS:
            return value
    return "json" if environ.get(env_name("log-format")) == "json" else "text"


async def _plan(args: argparse.Namespace, api_key: str | None, log: Log) -> int:
    """``plan``: the run's settings, no emulator, no paid request; print what it would pay.

    With a key (and not --emulate), the credit balance is asked (unpaid) and shown.
    """
    _check_conflicts(args)
    if args.emulate and args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    rpm, read_rate = _emulated_budget(args) if args.emulate else _real_budget(args)
    config = _config(
        args, base_url=args.base_url or DEFAULT_ROOT, api_key=None, rpm=rpm, read_rate=read_rate
    )
    plan = await asyncio.to_thread(make_plan, config)
    report_plan(plan, config.output, config.rpm, args.summary_json, log)
    if api_key and not args.emulate:
        await show_for_plan(dataclasses.replace(config, api_key=api_key), plan, log)
    return EXIT_OK


def _config(
    args: argparse.Namespace, *, base_url: str, api_key: str | None, rpm: float, read_rate: float
) -> RunConfig:
    """The RunConfig the flags describe (the API's address, key and budgets resolved)."""
    return RunConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        errors=args.errors,
        state_dir=args.state_dir,
        text_field=args.text_field,
        id_field=args.id_field,
        model=args.model,
        dimensions=args.dimensions,
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


def _check_required(args: argparse.Namespace) -> None:
    """INPUT and --output may come from a config file, so argparse cannot require them."""
    if not args.inputs:
        raise ConfigError(
            "no INPUT: name the input files, directories or globs, or set input = [...] in "
            "the config file"
        )
    if args.output is None:
        raise ConfigError("no --output: name the output, or set output = ... in the config file")


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
async def _api(
    args: argparse.Namespace, api_key: str | None, log: Log
) -> AsyncIterator[tuple[str, str | None, float, float]]:
    """Yield (base_url, key, rpm, read_rate): the real API, or a started emulator."""
    _check_conflicts(args)
    if not args.emulate:
        yield (args.base_url or DEFAULT_ROOT, _require_key(api_key), *_real_budget(args))
        return
    if args.base_url is not None:
        raise ConfigError("--emulate and --base-url conflict: the emulator is the API")
    from .emulator import Emulator, EmulatorConfig

    emulator_config = EmulatorConfig(
        submit_limit=EMULATE_SUBMIT_LIMIT, read_limit=EMULATE_READ_LIMIT
    )
    async with Emulator(emulator_config) as emulator:
        log.info(f"emulator listening on {emulator.url}", event="emulator", url=emulator.url)
        yield (emulator.url, EMULATE_KEY, *_emulated_budget(args))


def _require_key(api_key: str | None) -> str:
    if not api_key:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV}=<your key> (https://cloud.segmind.com) or "
            "api-key in a config file readable by you only, or add --emulate to try "
            "batch-embed against its built-in emulator"
        )
    return api_key


def _install_signals(stop: asyncio.Event, log: Log) -> None:
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
        if log.redraws:
            log.stream.write("\n")  # off the progress line
        if stop.is_set():
            log.info("second signal, exiting now", event="signal")
            os._exit(EXIT_INTERRUPTED)
        name = signal.Signals(signum).name
        log.info(
            f"{name}: stopping; collecting jobs in flight (again to exit at once)",
            event="signal",
            signal=name,
        )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, handle, signum)
