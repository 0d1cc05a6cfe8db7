"""The settings of one run: a frozen, keyword-only dataclass validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .answer_body import DEFAULT_MAX_ANSWER_BYTES, MIN_MAX_ANSWER_BYTES
from .api_root import DEFAULT_ROOT
from .errors import ConfigError
from .layout import Target
from .models import DEFAULT_MODEL, ModelSpec, model_spec
from .retry import RetryPolicy
from .spending import DEFAULT_MAX_RESUBMITS, cap_from

DEFAULT_RPM = 50.0
"""Segmind's Pro plan: 50 submits per minute."""
DEFAULT_READ_RATE = 5.0
"""Status polls and result fetches per second, together."""
DEFAULT_MAX_IN_FLIGHT = 512
DEFAULT_RETENTION = 3600.0
"""Segmind keeps a job's result for an hour after its submission."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything ``batch-embed run`` needs; every error names the argument."""

    inputs: tuple[str, ...]
    output: Target
    """A local path, or a URI in object storage (``s3://bucket/prefix``)."""
    errors: Target | None = None
    state_dir: Path | None = None
    """Where the journal and staged parts live (None: ``OUT.batch_embed/`` beside OUT)."""
    text_field: str = "text"
    id_field: str | None = None
    model: str = DEFAULT_MODEL
    dimensions: int | None = None
    """Vectors of this many values (None: the model's full size); see :mod:`.models`."""
    base_url: str = DEFAULT_ROOT
    api_key: str | None = field(default=None, repr=False)
    rpm: float = DEFAULT_RPM
    read_rate: float = DEFAULT_READ_RATE
    shared_limit: bool = False
    """The plan's ``rpm`` counts every request (polls and fetches too): one budget for all,
    and ``read_rate`` is not used."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    truncate: bool = False
    fresh: bool = False
    allow_insecure_http: bool = False
    retention: float = DEFAULT_RETENTION
    retention_margin: float = 300.0
    rows_per_part: int = 4096
    commit_interval: float = 60.0
    """Commit a part at least this often (seconds), so slow runs keep what they paid for."""
    grace_seconds: float = 30.0
    request_timeout: float = 60.0
    """Seconds one HTTP exchange may take in all (connecting at most 10 of them); a request
    that times out is retried like a 5xx."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_submits: int | None = None
    """Stop submitting after this many paid submits (the run then exits "capped")."""
    price_per_call: float | None = None
    """What one submit costs, in the account's credits (for ``max_cost`` and the plan)."""
    max_cost: float | None = None
    """Stop before the submits would cost more than this (needs ``price_per_call``)."""
    retry_failed: bool = False
    """Submit again the texts that failed for their content (400, 422, bad output, lost)."""
    prune: bool = False
    """Remove from the output the rows whose key the input no longer has."""
    max_resubmits: int = DEFAULT_MAX_RESUBMITS
    """Resubmits of one text over the output's life; past it the row fails as ``lost``."""
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    """The longest body of one API answer read (after decompression); a longer one is a
    malformed answer (retried, then the row's error names the cap)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: give at least one input file, directory or glob")
        model_spec(self.model, self.dimensions)
        for name in (
            "rpm",
            "read_rate",
            "retention",
            "grace_seconds",
            "commit_interval",
            "request_timeout",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")
        if not (0 <= self.retention_margin < self.retention):
            raise ConfigError(
                f"retention_margin: expected 0 <= margin < retention ({self.retention}), "
                f"got {self.retention_margin!r}"
            )
        for name in ("max_in_flight", "rows_per_part"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.max_submits is not None and (
            isinstance(self.max_submits, bool)
            or not isinstance(self.max_submits, int)
            or self.max_submits < 0
        ):
            raise ConfigError(f"max_submits: expected an integer >= 0, got {self.max_submits!r}")
        if (
            isinstance(self.max_resubmits, bool)
            or not isinstance(self.max_resubmits, int)
            or (self.max_resubmits < 0)
        ):
            raise ConfigError(
                f"max_resubmits: expected an integer >= 0, got {self.max_resubmits!r}"
            )
        if (
            isinstance(self.max_answer_bytes, bool)
            or not isinstance(self.max_answer_bytes, int)
            or self.max_answer_bytes < MIN_MAX_ANSWER_BYTES
        ):
            raise ConfigError(
                f"max_answer_bytes: expected an integer >= {MIN_MAX_ANSWER_BYTES}, "
                f"got {self.max_answer_bytes!r}"
            )
        for name in ("price_per_call", "max_cost"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (name == "price_per_call" and value == 0)
            ):
                bound = "> 0" if name == "price_per_call" else ">= 0"
                raise ConfigError(f"{name}: expected a finite number {bound}, got {value!r}")
        if self.max_cost is not None and self.price_per_call is None:
            raise ConfigError("max_cost: needs price_per_call (what one submit costs)")
        if not self.text_field:
            raise ConfigError("text_field: must not be empty")
        if self.id_field == "":
            raise ConfigError("id_field: must not be empty (omit it to derive keys)")

    @property
    def spec(self) -> ModelSpec:
        """The model, asked for the configured dimensions."""
        return model_spec(self.model, self.dimensions)

    @property
    def submit_cap(self) -> int | None:
        """The paid submits this run may make (None: no cap)."""
        return cap_from(self.max_submits, self.max_cost, self.price_per_call)

    @property
    def submit_rate(self) -> float:
        """Submits per second."""
        return self.rpm / 60.0
