"""Every line the CLI writes to stderr: ``batch-embed: ...`` text, or one JSON object each.

``--log-format json`` is for log collectors: each line is an object with ``ts`` (UTC,
ISO 8601), ``level`` (info, warning, error), ``event`` (what the line is: ``progress``,
``credits``, ``summary``, ``plan``, ``failed_row``, ``stopped``, ``error``, ...),
``message`` (the text line's words) and the event's own fields. Text lines read as before.
The wall clock is injected, so tests know every ``ts``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
Level = Literal["info", "warning", "error"]
_PREFIX = {
    "info": "batch-embed: ",
    "warning": "batch-embed: warning: ",
    "error": "batch-embed: error: ",
}


class Log:
    """Writes the CLI's lines to one stream in one format."""

    def __init__(
        self,
        format: LogFormat = "text",
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.format = format
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock

    @property
    def json(self) -> bool:
        return self.format == "json"

    @property
    def redraws(self) -> bool:
        """Whether a live line may be redrawn in place (text on a terminal; never in JSON)."""
        return not self.json and self.stream.isatty()

    def info(self, message: str, event: str = "info", **fields: Any) -> None:
        self.write("info", event, message, fields)

    def warning(self, message: str, event: str = "warning", **fields: Any) -> None:
        self.write("warning", event, message, fields)

    def error(self, message: str, event: str = "error", **fields: Any) -> None:
        self.write("error", event, message, fields)

    def write(self, level: Level, event: str, message: str, fields: dict[str, Any]) -> None:
        """One line: the text with its level's prefix, or the JSON object."""
        if self.json:
            stamp = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
            record = {"ts": stamp, "level": level, "event": event, "message": message, **fields}
            line = orjson.dumps(record, default=str).decode()
        else:
            line = _PREFIX[level] + message
        self.stream.write(line + "\n")
        self.stream.flush()
