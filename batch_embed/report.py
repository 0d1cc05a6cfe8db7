"""What the CLI prints when a run or a plan is over: the summary, the first failed rows.

Everything goes to stderr (stdout stays free for a caller's own use); ``--summary-json``
writes the same figures as JSON for machines.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from .error_sink import iter_errors
from .errors import InputError
from .layout import errors_name
from .log import Log
from .pipeline import Outcome, RunResult
from .plan import Plan
from .settings import KEY_NAME, Settings, shown
from .status import Status
from .write_failures import writing

SHOWN_ERRORS = 5
"""How many row errors the end-of-run report quotes (the rest are in the errors output)."""
SCANNED_ERRORS = 10_000


def first_errors(path: Path, limit: int) -> list[str]:
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


def report_run(result: RunResult, summary_json: Path | None, log: Log) -> None:
    """The end of a run: the summary, the first failed rows, how it stopped.

    In JSON the summary is one ``summary`` event carrying every figure of ``--summary-json``.
    """
    stats = result.stats
    layout = result.layout
    summary = stats.as_dict() | {"outcome": result.outcome.value, "reason": result.reason}
    if log.json:
        log.info(
            f"run {result.outcome.value}",
            event="summary",
            output=layout.name,
            errors=errors_name(layout),
            **summary,
        )
    else:
        for line in stats.summary_lines():
            log.info(line)
    if stats.rows_failed:
        for line in first_errors(layout.errors, SHOWN_ERRORS):
            log.info(f"failed: {line}", event="failed_row")
    if not log.json:
        log.info(f"output {layout.name}; errors {errors_name(layout)}")
    if result.reason:
        log.info(f"run stopped: {result.reason}", event="stopped")
    if result.outcome is Outcome.INTERRUPTED:
        log.info("interrupted; run the same command again to resume", event="stopped")
    if result.outcome is Outcome.LEDGER_MISMATCH:
        log.error(
            f"BUG: the ledger does not balance for {stats.unbalanced}: "
            "rows read != embedded + failed + skipped; please report it",
            event="ledger_mismatch",
        )
    if summary_json is not None:
        _write_json(summary_json, summary)
    if result.outcome is Outcome.CAPPED:
        log.info(
            "stopped at the submit cap; run the same command again to continue", event="stopped"
        )


def report_plan(
    plan: Plan, output: Path | str, rpm: float, summary_json: Path | None, log: Log
) -> None:
    """Print a plan (and write it as JSON with ``--summary-json``); one ``plan`` event in JSON."""
    if log.json:
        log.info(f"plan: {plan.to_submit} paid calls", event="plan", **plan.as_dict())
    else:
        for line in plan.lines(output, rpm):
            log.info(line)
    if summary_json is not None:
        _write_json(summary_json, plan.as_dict())


def report_settings(settings: Settings, *, json_output: bool) -> None:
    """Print every setting of the run with where it came from (the key as set/unset)."""
    rows = shown(settings)
    if json_output:
        _print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    if settings.config is not None:
        print(f"# config file: {settings.config}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        text = str(value) if name == KEY_NAME else _toml_value(value)  # set / unset
        print(f"{name:<{width}}  {text:<24}  # {source}")


def _toml_value(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def report_status(status: Status, *, json_output: bool) -> None:
    """Print a status on stdout (it is the command's answer), as lines or as JSON."""
    if json_output:
        _print_json(status.as_dict())
        return
    for line in status.lines():
        print(line)


def _write_json(path: Path, data: object) -> None:
    """``--summary-json``: the figures as indented JSON (a failed write is WriteFailed)."""
    with writing(path):
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def _print_json(data: object) -> None:
    """A command's answer on stdout as indented JSON."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
