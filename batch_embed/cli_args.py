"""The ``batch-embed`` argument parser: the commands, their flags, their help and examples.

``run`` and ``plan`` take the same flags (a plan answers for exactly the run it describes);
``emulator`` hands its arguments to the emulator's own parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import __version__
from .answer_body import DEFAULT_MAX_ANSWER_BYTES, MIN_MAX_ANSWER_BYTES
from .api_root import DEFAULT_ROOT
from .cli_help import CONFIG_EPILOG, PLAN_EPILOG, RUN_EPILOG, STATUS_EPILOG
from .config import DEFAULT_MAX_IN_FLIGHT, DEFAULT_READ_RATE, DEFAULT_RPM
from .errors import ConfigError
from .log import LOG_FORMATS
from .models import DEFAULT_MODEL, MODELS
from .progress import DEFAULT_LOG_EVERY
from .spending import DEFAULT_MAX_RESUBMITS
from .storage import is_uri, refuse_credentials

ENGINES = ("local", "ray")
DEFAULT_RAY_WORKERS = 2
"""batch_embed.ray's DEFAULT_WORKERS, repeated here so that --help never imports ray."""


def build_parser() -> argparse.ArgumentParser:
    """The ``batch-embed`` argument parser (``run``, ``plan`` and ``emulator``)."""
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
    add_run_flags(run)
    plan = sub.add_parser(
        "plan",
        help="say what a run would pay, without a request to the API",
        description="Say what `run` with the same flags would do and pay; no request is made.",
        epilog=PLAN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(plan)
    config = sub.add_parser(
        "config",
        help="print the effective settings and where each came from",
        description="Print the settings `run` would use, each with its source: flag, env "
        "(BATCH_EMBED_<FLAG>), file (--config) or default. The API key is shown as set/unset.",
        epilog=CONFIG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(config)
    config.add_argument("--json", action="store_true", help="print the settings as JSON")
    status = sub.add_parser(
        "status",
        help="what a run on an output has done (works while it runs; never writes)",
        description="Read the journal and the output of OUT without taking the run's lock: "
        "rows committed/pending/failed, texts in flight and the minutes left of their hour, "
        "paid calls so far, the last run's start, end and outcome.",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("output", type=_target, metavar="OUT", help="the run's --output")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--state-dir", type=_local_path, default=None, metavar="PATH", help="the run's --state-dir"
    )
    sub.add_parser(
        "emulator", help="serve the built-in API emulator (see: emulator --help)", add_help=False
    )
    return parser


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (and of ``plan``, which answers for that run)."""
    parser.add_argument(
        "inputs",
        nargs="*",
        type=_input_name,
        metavar="INPUT",
        help=".jsonl/.ndjson (optionally .gz), .parquet, a directory or a glob (required, "
        "here or as input = [...] in the config file)",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=_target,
        default=None,
        metavar="OUT",
        help="a .parquet file, or a directory that receives part files; either may be in "
        "object storage (s3://bucket/prefix, gs://...) (required)",
    )
    parser.add_argument(
        "--state-dir",
        type=_local_path,
        default=None,
        metavar="PATH",
        help="where the journal and staged parts live, on local disk (default: "
        "OUT.batch_embed/ beside a local output; for one in object storage, a directory "
        "under ~/.cache/batch_embed/ named after its URI); give the same PATH to every run "
        "of this output",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="a TOML file of settings, keys named as the long flags (default: "
        "$BATCH_EMBED_CONFIG); flags beat the environment, which beats the file",
    )
    parser.add_argument(
        "--text-field",
        default="text",
        help="the text's key or column; dotted paths reach into nested JSON (default: text)",
    )
    parser.add_argument(
        "--id-field",
        default=None,
        help="the row key's field (default: derived from file and line/row)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(MODELS),
        help=f"the model slug (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--dimensions",
        type=_positive_int,
        default=None,
        metavar="N",
        help="vectors of N values (default: the model's full size): text-embedding-3 keeps "
        "the first N and L2-normalises them again; gemini-embedding-001 is asked for N "
        "(output_dimensionality, 128 to 3072)",
    )
    parser.add_argument("--base-url", default=None, help=f"the API root (default: {DEFAULT_ROOT})")
    parser.add_argument(
        "--rpm",
        type=_positive_float,
        default=None,
        help=f"submits per minute: your plan's rate limit (default: {DEFAULT_RPM:g}"
        "; with --emulate, the emulator's limit)",
    )
    parser.add_argument(
        "--read-rate",
        type=_positive_float,
        default=None,
        help="status polls + result fetches per second (default: "
        f"{DEFAULT_READ_RATE:g}; with --emulate, the emulator's limit)",
    )
    parser.add_argument(
        "--shared-limit",
        action="store_true",
        help="your plan's --rpm counts every request, status polls and result fetches too: "
        "one budget for all (--read-rate is then not used)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="one HTTP request may take this long in all; a timeout is retried like a 5xx "
        "(default: 60)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help=f"texts submitted and not yet written, at most (default: {DEFAULT_MAX_IN_FLIGHT})",
    )
    parser.add_argument(
        "--errors",
        type=_target,
        default=None,
        metavar="PATH",
        help="the errors output (JSONL; default: <output>.errors.jsonl)",
    )
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="cut texts over the model's token limit instead of failing them",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="forget earlier runs on this output and start over"
    )
    parser.add_argument(
        "--emulate",
        action="store_true",
        help="run against the built-in emulator on a free loopback port (no key)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain-http --base-url that is not a loopback address",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the end-of-run summary as JSON",
    )
    parser.add_argument(
        "--max-submits",
        type=_count,
        default=None,
        metavar="N",
        help="stop submitting after N paid submits: collect what is in flight, commit, exit 6; "
        "the next run continues",
    )
    parser.add_argument(
        "--price-per-call",
        type=_non_negative_float,
        default=None,
        metavar="X",
        help="what one submit costs (credits); the plan shows the cost, --max-cost uses it",
    )
    parser.add_argument(
        "--max-cost",
        type=_non_negative_float,
        default=None,
        metavar="X",
        help="stop before the submits cost more than X (needs --price-per-call); exit 6",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="run even when the credit balance does not cover what --price-per-call says "
        "the run costs",
    )
    parser.add_argument(
        "--max-resubmits",
        type=_count,
        default=DEFAULT_MAX_RESUBMITS,
        metavar="N",
        help="submit one text again at most N times over the output's life when the service "
        f"loses its job; past that the row fails as 'lost' (default: {DEFAULT_MAX_RESUBMITS})",
    )
    parser.add_argument(
        "--max-answer-bytes",
        type=_answer_bytes,
        default=DEFAULT_MAX_ANSWER_BYTES,
        metavar="N",
        help="read at most N bytes of one API answer (after decompression; suffixes K, M, G "
        "count 1024s); a longer answer is malformed: retried, then the row fails naming the "
        f"cap (default: {DEFAULT_MAX_ANSWER_BYTES // 2**20}M)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the texts that failed for their content before (400, 422, bad "
        "output, lost); failures of a passing cause are always retried",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="remove from the output the rows whose key the input no longer has "
        "(default: keep them, and count them as gone)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no progress view (on a terminal or in the log)"
    )
    parser.add_argument(
        "--log-every",
        type=_positive_float,
        default=DEFAULT_LOG_EVERY,
        metavar="SECONDS",
        help="when stderr is not a terminal, one progress line every SECONDS (default: "
        f"{DEFAULT_LOG_EVERY:g}); on a terminal the line is redrawn in place",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default), or json: every line on stderr one JSON object (progress, "
        "warnings, errors, the summary) for log collectors",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): this machine reads, embeds and writes; ray: a Ray cluster "
        "does, through Ray Data (OUT is then a directory or prefix; needs "
        "`pip install 'batch_embed[ray]'`)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="the Ray cluster to run on (auto: the one this machine belongs to); implies "
        "--engine ray (default: start a local Ray instance)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"--engine ray: the embedding actors (default: {DEFAULT_RAY_WORKERS})",
    )
    # Advanced, hidden: the size of the committed parts (tests, tuning).
    parser.add_argument("--rows-per-part", type=_positive_int, default=None, help=argparse.SUPPRESS)


def _target(text: str) -> Path | str:
    """A local path, or a URI in object storage (kept as written)."""
    return _input_name(text).rstrip("/") if is_uri(text) else Path(text)


def _input_name(text: str) -> str:
    """An input as named (a path, a glob or a URI); a URI carrying credentials is refused."""
    try:
        refuse_credentials(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _local_path(text: str) -> Path:
    """A local path: the journal stays on local disk whatever the output."""
    if is_uri(text):
        raise argparse.ArgumentTypeError(
            f"{text}: the state directory must be a local path (it holds the journal, a "
            "SQLite database); the output may be in object storage"
        )
    return Path(text)


def _positive_float(text: str) -> float:
    return _finite_float(text, allow_zero=False)


def _non_negative_float(text: str) -> float:
    return _finite_float(text, allow_zero=True)


def _finite_float(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and (allow_zero or value > 0) and value != float("inf")):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
    return value


_SIZE_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30}


def _answer_bytes(text: str) -> int:
    """A byte count such as ``4194304``, ``512K`` or ``4M`` (also ``4MiB``), at least 1K."""
    word = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = _SIZE_SUFFIXES.get(word[-1:], 1)
    digits = word[:-1] if scale > 1 else word
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected a byte count such as 4194304, 512K or 4M, got {text!r}"
        )
    value = int(digits) * scale
    if value < MIN_MAX_ANSWER_BYTES:
        raise argparse.ArgumentTypeError(
            f"expected at least {MIN_MAX_ANSWER_BYTES} bytes, got {text!r}"
        )
    return value


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


NUMERIC_TYPES: dict[object, str] = {
    _positive_float: "a number > 0",
    _non_negative_float: "a number >= 0",
    _positive_int: "an integer >= 1",
    _count: "an integer >= 0",
}
"""The flags' converters that take numbers -> what they accept (a config file's numbers)."""

SIZE_TYPES: frozenset[object] = frozenset({_answer_bytes})
"""Converters of sizes, which a config file may give as a number or as a string ("4M")."""
