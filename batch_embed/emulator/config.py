"""The emulator's switches: one frozen dataclass, validated on construction, plus parsers.

Every switch of ``python -m batch_embed.emulator`` is a field of :class:`EmulatorConfig`;
``POST /_emulator/config`` and ``Emulator.update()`` accept the same field names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..errors import ConfigError

OutputShape = Literal["openai-string", "openai-object", "list", "embedding", "embeddings", "data"]
"""How a COMPLETED job's ``output`` nests the vector (see the package docstring)."""

OUTPUT_SHAPES: tuple[str, ...] = get_args(OutputShape)

_RATE_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}

_RANGE_FIELDS = ("latency", "cold_start", "slow")
_RATE_FIELDS = ("submit_limit", "read_limit", "shared_limit")
_PROBABILITY_FIELDS = (
    "cold_start_rate",
    "retry_after_rate",
    "retry_after_date_rate",
    "error_rate",
    "html_error_rate",
    "drop_rate",
    "lost_submit_rate",
    "fail_rate",
    "slow_rate",
)


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``"N/s"``, ``"N/min"`` or ``"N/h"`` into ``(count, window_seconds)``.

    >>> parse_rate("50/min")
    (50, 60.0)
    """
    count_text, sep, unit = str(text).strip().partition("/")
    window = _RATE_UNITS.get(unit.strip().lower()) if sep else None
    try:
        count = int(count_text.strip())
    except ValueError:
        count = 0
    if window is None or count < 1:
        raise ConfigError(
            f"rate {text!r}: expected N/s, N/min or N/h with a positive integer N (e.g. 50/min)"
        )
    return count, window


def parse_range(text: str) -> tuple[float, float]:
    """Parse ``"LO-HI"`` (seconds, uniform) or a single ``"X"`` into ``(lo, hi)``.

    >>> parse_range("0.2-1.0")
    (0.2, 1.0)
    >>> parse_range("3")
    (3.0, 3.0)
    """
    lo_text, sep, hi_text = str(text).strip().partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo
    except ValueError:
        raise ConfigError(
            f"range {text!r}: expected LO-HI or X in seconds (e.g. 0.2-1.0)"
        ) from None
    return lo, hi


def _check_number(name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    number = float(value)
    if positive and number <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value!r}")
    if number < 0:
        raise ConfigError(f"{name}: must be >= 0, got {value!r}")
    return number


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Every switch of the emulator, with the defaults a plain ``python -m`` run uses.

    Ranges are ``(lo, hi)`` seconds drawn uniformly; ``*_rate`` fields are probabilities in
    [0, 1]; limits are ``"N/s"``/``"N/min"`` strings (see :func:`parse_rate`) or None.
    The defaults are a healthy API: realistic latency, no limits, no faults.
    """

    api_key: str | None = None
    """The only accepted ``x-api-key``; None accepts any non-empty key."""
    latency: tuple[float, float] = (0.2, 1.0)
    """Job latency from submit to terminal state (a quarter of it is spent QUEUED)."""
    cold_start_rate: float = 0.0
    """Probability that a job waits for a cold worker first (a long QUEUED phase)."""
    cold_start: tuple[float, float] = (10.0, 60.0)
    """Extra QUEUED seconds of a cold-start job."""
    submit_limit: str | None = None
    """Sliding-window limit on submits (``POST /v2/{slug}`` and ``POST /v1/{slug}``)."""
    read_limit: str | None = None
    """Sliding-window limit on reads (status polls and result fetches)."""
    shared_limit: str | None = None
    """Sliding-window limit on every API request together (credits check included)."""
    retry_after_rate: float = 0.5
    """Probability that a 429 carries ``Retry-After``."""
    retry_after_date_rate: float = 0.1
    """Probability that a sent ``Retry-After`` is an HTTP-date instead of seconds."""
    error_rate: float = 0.0
    """Probability of a random 500/502/504 answer, on any API endpoint."""
    html_error_rate: float = 0.5
    """Fraction of injected 5xx answers whose body is a proxy's HTML page, not JSON."""
    drop_rate: float = 0.0
    """Probability that a request's connection is dropped with no answer at all."""
    lost_submit_rate: float = 0.0
    """Probability that a submit creates (and bills) its job but its answer is lost."""
    fail_rate: float = 0.0
    """Probability that a job ends FAILED with the content-block error."""
    slow_rate: float = 0.0
    """Probability that an answer is delayed by a draw from ``slow``."""
    slow: tuple[float, float] = (1.0, 5.0)
    """Delay of a slow answer, seconds."""
    retention: float = 3600.0
    """Seconds after submission after which status and result answer 404."""
    result_ttl: float | None = None
    """Seconds after completion after which the result body answers 404 (None: retention)."""
    credits: float | None = None
    """Paid credit balance; None is unlimited. Setting it at runtime resets the balance."""
    free_credits: float = 0.0
    """Free credit balance, spent before the paid one."""
    price: float = 0.001
    """Credits one accepted submit (or sync call) costs."""
    credits_status: int | None = None
    """Answer ``GET /v1/get-user-credits`` with this HTTP error status (None: the balance)."""
    output_shape: OutputShape = "openai-string"
    """Where ``output`` nests the vector; see ``OUTPUT_SHAPES``."""
    seed: int | None = None
    """Seed of every random draw (faults, latencies, request ids); None is unpredictable."""

    def __post_init__(self) -> None:
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigError("api_key: expected a non-empty string or None")
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or len(value) != 2:
                raise ConfigError(f"{name}: expected (lo, hi) seconds, got {value!r}")
            for bound in value:
                _check_number(name, bound)
            if value[0] > value[1]:
                raise ConfigError(f"{name}: lo must be <= hi, got {value!r}")
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            if _check_number(name, value) > 1:
                raise ConfigError(f"{name}: expected a probability in [0, 1], got {value!r}")
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_rate(value)
                except ConfigError as err:
                    raise ConfigError(f"{name}: {err}") from None
        _check_number("retention", self.retention, positive=True)
        if self.result_ttl is not None:
            _check_number("result_ttl", self.result_ttl, positive=True)
        if self.credits is not None:
            _check_number("credits", self.credits)
        _check_number("free_credits", self.free_credits)
        _check_number("price", self.price)
        if self.credits_status is not None and not (
            isinstance(self.credits_status, int) and 400 <= self.credits_status <= 599
        ):
            raise ConfigError(
                f"credits_status: expected an HTTP error status, got {self.credits_status!r}"
            )
        if self.output_shape not in OUTPUT_SHAPES:
            raise ConfigError(
                f"output_shape: expected one of {', '.join(OUTPUT_SHAPES)}, "
                f"got {self.output_shape!r}"
            )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ConfigError(f"seed: expected an integer or None, got {self.seed!r}")

    @property
    def effective_result_ttl(self) -> float:
        """Seconds a completed body stays fetchable after completion."""
        return self.retention if self.result_ttl is None else self.result_ttl

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (ranges as lists)."""
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }


def config_with_changes(config: EmulatorConfig, changes: Mapping[str, Any]) -> EmulatorConfig:
    """Return ``config`` with ``changes`` applied, accepting JSON-ish values.

    Range fields may be given as ``[lo, hi]`` or ``"lo-hi"``. Unknown field names raise
    :class:`ConfigError` naming them.
    """
    names = {field.name for field in dataclasses.fields(EmulatorConfig)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    normalized: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _RANGE_FIELDS and isinstance(value, str):
            try:
                value = parse_range(value)
            except ConfigError as err:
                raise ConfigError(f"{name}: {err}") from None
        elif name in _RANGE_FIELDS and isinstance(value, list):
            value = tuple(value)
        normalized[name] = value
    return dataclasses.replace(config, **normalized)
