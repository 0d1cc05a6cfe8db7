"""The emulator's counters, served at ``GET /_emulator/stats`` and by ``Emulator.stats()``.

Every key is always present (zeros included), so tests can compare without ``.get``:

``requests``                        ``{endpoint: {status code or "dropped": count}}``
``requests_total``                  all requests counted in ``requests``
``submits_accepted``                v2 submits answered 200
``jobs_created``                    v2 jobs created, lost submits included (each billed)
``sync_calls``                      v1 sync calls billed
``distinct_texts``                  (model, text) pairs billed at least once (v2 jobs, v1 calls)
``max_submits_per_text``            the most times one text was billed for one model
``texts_submitted_more_than_once``  (model, text) pairs billed twice or more
``polls`` / ``result_fetches``      status / result requests that passed auth and limits
``rate_limited``                    429s sent, ``{"submit", "read", "shared"}``
``faults``                          faults injected, by kind (see ``FAULT_KINDS``)
``unfinished_jobs``                 jobs not yet COMPLETED/FAILED now
``peak_unfinished_jobs``            the most jobs unfinished at once
``stored_jobs``                     jobs still within retention
``credits_spent``                   credits billed since start (not reset by reset-stats)
``credits_remaining``               paid balance (None: unlimited)
``free_credits_remaining``          free balance
"""

from __future__ import annotations

from collections import Counter
from typing import Any

ENDPOINTS = ("submit", "status", "result", "poll", "sync", "credits", "other")
"""Endpoint names used in ``requests``: poll is the v1 ``poll_url``, other any unknown path."""

LIMIT_CLASSES = ("submit", "read", "shared")

FAULT_KINDS = (
    "drop",
    "error",
    "error_html",
    "slow",
    "lost_submit",
    "fail",
    "cold_start",
)
"""``error`` counts every injected 5xx; ``error_html`` the subset with an HTML body;
``lost_submit`` billed submits whose answer was lost; ``fail`` jobs failed by ``fail_rate``."""


class Stats:
    """Counters, updated by the request handlers on the event loop."""

    def __init__(self) -> None:
        self.requests: dict[str, Counter[str]] = {name: Counter() for name in ENDPOINTS}
        self.rate_limited: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.per_text: dict[tuple[str, bytes], int] = {}
        self.max_per_text = 0
        self.repeated_texts = 0
        self.submits_accepted = 0
        self.jobs_created = 0
        self.sync_calls = 0
        self.polls = 0
        self.result_fetches = 0

    def answered(self, endpoint: str, status: int | str) -> None:
        """Count one answer (or ``"dropped"``) of ``endpoint``."""
        self.requests[endpoint][str(status)] += 1

    def billed_text(self, slug: str, digest: bytes) -> None:
        """Count one paid call of model ``slug`` for the text with ``digest``."""
        key = (slug, digest)
        count = self.per_text.get(key, 0) + 1
        self.per_text[key] = count
        if count == 2:
            self.repeated_texts += 1
        if count > self.max_per_text:
            self.max_per_text = count

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (the store- and credit-related keys excluded)."""
        requests = {name: dict(counter) for name, counter in self.requests.items()}
        return {
            "requests": requests,
            "requests_total": sum(sum(counter.values()) for counter in self.requests.values()),
            "submits_accepted": self.submits_accepted,
            "jobs_created": self.jobs_created,
            "sync_calls": self.sync_calls,
            "distinct_texts": len(self.per_text),
            "max_submits_per_text": self.max_per_text,
            "texts_submitted_more_than_once": self.repeated_texts,
            "polls": self.polls,
            "result_fetches": self.result_fetches,
            "rate_limited": {name: self.rate_limited[name] for name in LIMIT_CLASSES},
            "faults": {name: self.faults[name] for name in FAULT_KINDS},
        }
