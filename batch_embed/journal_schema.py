"""The journal's tables, and the states of its rows and texts (see :mod:`batch_embed.journal`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

SCHEMA_VERSION = "1"


class RowState(enum.IntEnum):
    """Where one row key stands."""

    PENDING = 0
    """Seen; no vector written for it yet."""
    COMMITTED = 1
    """Its vector is in a committed output part."""
    FAILED = 2
    """Its error record is written."""


class TextState(enum.IntEnum):
    """Where one distinct text's job stands."""

    INTENT = 0
    """A submit is about to be (or was) sent; its answer is not recorded."""
    SUBMITTED = 1
    """The submit was answered; ``request_id`` and ``submitted_at`` are known."""
    DONE = 2
    """Its vector is in a committed output part."""
    FAILED = 3
    """The text cannot be embedded; the error is recorded."""


class RowVerdict(enum.Enum):
    """What to do with a row the reader produced, given what the journal knows."""

    NEW = "new"
    """Not seen before (or seen only by an interrupted run): embed it."""
    CHANGED = "changed"
    """An earlier run saw this id with another text: embed the new text."""
    DONE = "done"
    """An earlier run committed this id with this text: skip it."""
    REPEAT = "repeat"
    """This run already has this id with this text: a harmless duplicate, skip it."""
    CONFLICT = "conflict"
    """This run already has this id with a different text: a duplicate-id error."""


@dataclass(frozen=True, slots=True)
class TextRecord:
    """The journal's row for one text hash."""

    hash: str
    state: TextState
    request_id: str | None
    submitted_at: float | None
    submits: int
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    forgiven: int = 0

    @property
    def paid(self) -> int:
        """Submits that count against the text's resubmit allowance."""
        return self.submits - self.forgiven


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows(
    key PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL,
    run INTEGER NOT NULL,
    state INTEGER NOT NULL,
    source TEXT NOT NULL,
    location TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_by_run_state ON rows(run, state);
CREATE INDEX IF NOT EXISTS rows_by_hash ON rows(hash);
CREATE TABLE IF NOT EXISTS texts(
    hash TEXT PRIMARY KEY NOT NULL,
    state INTEGER NOT NULL,
    request_id TEXT,
    submitted_at REAL,
    submits INTEGER NOT NULL DEFAULT 0,
    error_kind TEXT,
    error_message TEXT,
    http_status INTEGER,
    forgiven INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS superseded(key PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pruned(key PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs(
    run INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    outcome TEXT,
    pid INTEGER,
    paid INTEGER
);
"""


TEXT_COLUMNS = (
    "hash, state, request_id, submitted_at, submits, error_kind, error_message, http_status, "
    "forgiven"
)
