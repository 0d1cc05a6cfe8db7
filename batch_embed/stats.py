"""Run counters, the per-file ledger, and the end-of-run summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class FileLedger:
    """One input file's accounting: every row read ends embedded, failed, skipped or left."""

    read: int = 0
    embedded: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    """Rows not embedded because the run stopped at its submit cap (the next run goes on)."""

    @property
    def balanced(self) -> bool:
        """True when read == embedded + failed + skipped + left."""
        return self.read == self.embedded + self.failed + self.skipped + self.left


@dataclass(slots=True)
class RunStats:
    """Everything a run counts; the progress view and the summary read it."""

    files: dict[str, FileLedger] = field(default_factory=dict)
    distinct_texts: int = 0
    duplicate_rows: int = 0
    """Rows that shared a text with an earlier row of this run (served by one job)."""
    repeated_ids: int = 0
    """Rows repeating an id with the same text (skipped)."""
    resumed_done: int = 0
    """Rows an earlier run already committed (skipped)."""
    changed_rows: int = 0
    """Rows whose id an earlier run saw with another text (embedded again)."""
    vanished_rows: int = 0
    """Rows an earlier run saw that this run's input no longer has (gone rows; their output
    rows stay unless ``--prune``)."""
    pruned_rows: int = 0
    """Gone rows removed from the output (``--prune``)."""
    key_source: str = ""
    """Where the row keys came from, in words."""
    derived_keys: bool = False
    """True when keys are ``<file>:<line>``: they move when lines move."""
    rebuilt_rows: int | None = None
    """Output rows re-read as the record because the journal disagreed with the output."""
    submit_cap: int | None = None
    capped: bool = False
    """True when the run stopped at its submit cap."""
    submits: int = 0
    """Submit requests sent that may have been billed (the paid calls)."""
    submits_accepted: int = 0
    possibly_billed_twice: int = 0
    resubmits: Counter[str] = field(default_factory=Counter)
    reattached: int = 0
    polls: int = 0
    result_fetches: int = 0
    throttled_submits: int = 0
    throttled_reads: int = 0
    retries: int = 0
    jobs_finished: int = 0
    rows_received: int = 0
    """Rows whose vector reached the writer (committed or still in its buffer)."""
    in_flight: int = 0
    truncated: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0

    def ledger(self, source: str) -> FileLedger:
        """The ledger of one input file (created on first use)."""
        found = self.files.get(source)
        if found is None:
            found = self.files[source] = FileLedger()
        return found

    @property
    def rows_read(self) -> int:
        return sum(f.read for f in self.files.values())

    @property
    def rows_embedded(self) -> int:
        return sum(f.embedded for f in self.files.values())

    @property
    def rows_failed(self) -> int:
        return sum(f.failed for f in self.files.values())

    @property
    def rows_skipped(self) -> int:
        return sum(f.skipped for f in self.files.values())

    @property
    def rows_left(self) -> int:
        return sum(f.left for f in self.files.values())

    @property
    def unbalanced(self) -> list[str]:
        """Files whose ledger does not balance (each one a bug)."""
        return [name for name, f in self.files.items() if not f.balanced]

    @property
    def polls_per_job(self) -> float:
        return self.polls / self.jobs_finished if self.jobs_finished else 0.0

    def as_dict(self) -> dict[str, object]:
        """The summary as plain data (for JSON output and tests)."""
        wall = max(0.0, self.finished - self.started)
        return {
            "rows_read": self.rows_read,
            "rows_embedded": self.rows_embedded,
            "rows_failed": self.rows_failed,
            "rows_skipped": self.rows_skipped,
            "rows_left": self.rows_left,
            "distinct_texts": self.distinct_texts,
            "duplicate_rows": self.duplicate_rows,
            "repeated_ids": self.repeated_ids,
            "resumed_done": self.resumed_done,
            "changed_rows": self.changed_rows,
            "vanished_rows": self.vanished_rows,
            "gone": self.vanished_rows,
            "pruned": self.pruned_rows,
            "key": self.key_source,
            "rebuilt_from_output": self.rebuilt_rows,
            "submit_cap": self.submit_cap,
            "capped": self.capped,
            "submits": self.submits,
            "possibly_billed_twice": self.possibly_billed_twice,
            "resubmits": dict(self.resubmits),
            "reattached": self.reattached,
            "polls": self.polls,
            "polls_per_job": round(self.polls_per_job, 3),
            "result_fetches": self.result_fetches,
            "throttled_429": self.throttled_submits + self.throttled_reads,
            "retries": self.retries,
            "truncated": self.truncated,
            "errors_by_kind": dict(self.errors_by_kind),
            "wall_seconds": round(wall, 3),
            "rows_per_second": round(self.rows_embedded / wall, 2) if wall > 0 else 0.0,
            "files": {
                name: {
                    "read": f.read,
                    "embedded": f.embedded,
                    "failed": f.failed,
                    "skipped": f.skipped,
                    "left": f.left,
                }
                for name, f in self.files.items()
            },
        }

    def summary_lines(self) -> list[str]:
        """The human summary printed at the end of a run."""
        d = self.as_dict()
        lines = [
            f"rows read {d['rows_read']}: embedded {d['rows_embedded']}, "
            f"failed {d['rows_failed']}, skipped {d['rows_skipped']}"
            + (f" (already done {self.resumed_done})" if self.resumed_done else "")
            + (f", left for the next run {self.rows_left}" if self.rows_left else ""),
            f"distinct texts {d['distinct_texts']} (duplicate rows {d['duplicate_rows']}); "
            f"submits {d['submits']}, polls/job {d['polls_per_job']}, "
            f"result fetches {d['result_fetches']}",
            f"429s {d['throttled_429']}, retries {d['retries']}, "
            f"possibly billed twice {d['possibly_billed_twice']}"
            + (f", resubmitted {d['resubmits']}" if self.resubmits else "")
            + (f", re-attached {self.reattached}" if self.reattached else ""),
            f"wall {d['wall_seconds']} s, {d['rows_per_second']} rows/s",
        ]
        if self.truncated:
            lines.append(
                f"truncated {self.truncated} texts to the model's token limit (--truncate)"
            )
        if self.key_source:
            lines.append(
                f"keys: {self.key_source}"
                + (
                    " (they move when lines move: a re-run after an insert pays again; "
                    "give the input an id field or --id-field)"
                    if self.derived_keys
                    else ""
                )
            )
        if self.rebuilt_rows is not None:
            lines.append(
                f"the journal did not match the output: re-read {self.rebuilt_rows} output "
                "rows as the record"
            )
        if self.changed_rows or self.vanished_rows:
            kept = (
                f"{self.pruned_rows} removed from the output (--prune)"
                if self.pruned_rows
                else "kept in the output (--prune removes them)"
            )
            lines.append(
                f"input changed since the last run: {self.changed_rows} rows with a new text "
                f"(embedded again), {self.vanished_rows} rows gone from the input ({kept})"
            )
        if self.capped:
            lines.append(
                f"stopped at the cap of {self.submit_cap} submits: {self.rows_left} rows read "
                "are left, plus the rows not read yet; run again to continue"
            )
        if self.errors_by_kind:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.errors_by_kind.items()))
            lines.append(f"errors by kind: {kinds}")
        return lines
