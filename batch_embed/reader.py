"""Stage 1: read the resolved inputs (JSONL and Parquet) as a stream of row batches.

Problems travel on two channels. A problem with a whole file (missing, unreadable, empty,
wrong format or schema) raises :class:`InputError` from :meth:`Reader.preflight`, which looks at
every input cheaply (the first lines of a JSONL file, a Parquet footer) before anything is
submitted. A problem with one row becomes an :class:`ErrorRecord` in the stream and reading goes
on. Memory is bounded by one batch; the formats themselves live in :mod:`jsonl_input` and
:mod:`parquet_input`, finding the files in :mod:`inputs`.

The row key: ``id_field`` when given; otherwise the input's own ``id`` field when the first
input has one (the Parquet schema has the column, or the first JSONL record has the key),
and only when it has none, a derived ``"<source>:<line>"`` / ``"<source>:<row>"`` key, which
moves whenever a line is inserted above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from .errors import ConfigError, InputError
from .fields import (
    TYPE_WORD,
    KeyType,
    as_key,
    bytes_exceed,
    id_problem,
    row_error,
    text_problem,
)
from .inputs import InputFile
from .jsonl_input import has_field, preflight_jsonl, read_jsonl
from .models import ModelSpec
from .parquet_input import has_column, preflight_parquet, read_parquet
from .records import ErrorKind, ErrorRecord, Row, RowKey, text_hash
from .tokens import bounded_prefix, surely_over
from .tokens import encode as encode_tokens
from .tokens import truncate as truncate_tokens

DEFAULT_ID_FIELD = "id"
"""The field used as the row key, without ``id_field``, when the input has it."""


@dataclass(slots=True)
class FileStats:
    """Counters of one input file; ``rows_read`` counts records (blank lines are not records)."""

    rows_read: int = 0
    rows_ok: int = 0
    rows_bad: int = 0
    truncated: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderConfig:
    """What to read from each record and how to batch it.

    ``text_field`` and ``id_field`` may be dotted paths into nested objects or Parquet structs
    (``meta.body``); a top-level key that literally contains the dot wins. Without
    ``id_field``, the key is the input's ``id`` field when it has one, else derived (see the
    module doc).
    """

    text_field: str = "text"
    id_field: str | None = None
    truncate: bool = False
    batch_size: int = 512
    model: ModelSpec

    def __post_init__(self) -> None:
        if not self.text_field:
            raise ConfigError("text_field: must be a non-empty field name")
        if self.id_field is not None and not self.id_field:
            raise ConfigError("id_field: must be a non-empty field name or None")
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"batch_size: must be a positive integer, got {self.batch_size!r}")


class Reader:
    """Reads the resolved inputs as batches of :class:`Row` and :class:`ErrorRecord`.

    ``stats`` holds a :class:`FileStats` per source, up to date after each batch.
    """

    def __init__(
        self, files: Sequence[InputFile], config: ReaderConfig, *, key_type: KeyType | None = None
    ) -> None:
        """``key_type``: the run's, when an earlier preflight settled it (a Ray read task
        reading one file of the run): :meth:`preflight` then holds the files to it."""
        self.files = list(files)
        self.config = config
        self.stats: dict[str, FileStats] = {f.source: FileStats() for f in self.files}
        self.id_field: str | None = config.id_field
        """The field keys come from (``None``: derived keys), settled by :meth:`preflight`."""
        self._key_type: KeyType | None = key_type

    @property
    def key_type(self) -> KeyType:
        """The type of every key in this run, known after :meth:`preflight`."""
        if self._key_type is None:
            raise RuntimeError("key_type is known only after preflight()")
        return self._key_type

    @property
    def key_source(self) -> str:
        """Where this run's keys come from, in words (after :meth:`preflight`)."""
        if self.id_field is None:
            return "derived <file>:<line> keys"
        if self.config.id_field is None:
            return f"the input's {self.id_field!r} field"
        return f"field {self.id_field!r}"

    def preflight(self) -> None:
        """Check every input as a whole and settle the key; raise InputError on a problem.

        Cheap by design: a Parquet file's footer, and the first ``SNIFF_LINES`` non-blank
        lines of a JSONL file. The key type comes from the first file that shows one (a Parquet
        id column's type, or the first usable id in a JSONL file); derived keys are strings.
        Given to the constructor, the key type is the run's: the id field is not looked for
        (``id_field`` None then means derived keys) and a Parquet id column must have it.
        """
        if self.config.id_field is None and self._key_type is None and self.files:
            first = self.files[0]
            found = has_column if first.format == "parquet" else has_field
            self.id_field = DEFAULT_ID_FIELD if found(first, DEFAULT_ID_FIELD) else None
        text_field, id_field = self.config.text_field, self.id_field
        key_type: KeyType | None = self._key_type or (None if id_field else "str")
        for file in self.files:
            try:
                size = file.size()
            except FileNotFoundError as err:
                raise InputError("no such file", path=file.source) from err
            except OSError as err:
                raise InputError(f"cannot be read: {err.strerror}", path=file.source) from err
            if size == 0:
                raise InputError("file is empty", path=file.source)
            if file.format == "parquet":
                seen = preflight_parquet(file, text_field, id_field)
            else:
                seen = preflight_jsonl(file, text_field, id_field)
            if key_type is None:
                key_type = seen
            elif file.format == "parquet" and seen is not None and seen != key_type:
                raise InputError(
                    f"id column holds {TYPE_WORD[seen]} but earlier inputs have "
                    f"{TYPE_WORD[key_type]} ids; all ids of a run must have one type",
                    path=file.source,
                    field=id_field,
                )
        # No file showed a usable id (all null or floats so far): rows will say why.
        self._key_type = key_type or "str"

    def batches(self) -> Iterator[list[Row | ErrorRecord]]:
        """Yield lists of at most ``batch_size`` rows and error records, file by file, lazily.

        Runs :meth:`preflight` first if it has not run. A batch never spans two files. A file
        that breaks midway (a truncated gzip stream, a corrupt Parquet page) raises InputError
        with the location reached.
        """
        if self._key_type is None:
            self.preflight()
        config = self.config
        for file in self.files:
            stats = self.stats[file.source] = FileStats()
            read = read_jsonl if file.format == "jsonl" else read_parquet
            for batch in read(
                file,
                text_field=config.text_field,
                id_field=self.id_field,
                batch_size=config.batch_size,
                make=self._make,
            ):
                bad = sum(type(item) is ErrorRecord for item in batch)
                stats.rows_read += len(batch)
                stats.rows_bad += bad
                stats.rows_ok += len(batch) - bad
                yield batch

    def _make(
        self, id_value: object, text: object, source: str, index: int, raw_len: int, jsonl: bool
    ) -> Row | ErrorRecord:
        """Check one record's id and text and build its row or its error record.

        ``index`` is the line number (JSONL) or row index (Parquet); ``raw_len`` is any upper
        bound of the text's UTF-8 length that is cheap to know, so that only texts that could
        be over the limit are tokenized (a token is at least one byte).
        """
        config = self.config
        location = f"line {index}" if jsonl else f"row {index}"
        if self.id_field is None:
            key: RowKey = f"{source}:{index}"
        else:
            problem = id_problem(id_value, self.key_type)
            if problem is not None:
                key = as_key(id_value, f"{source}:{index}")
                return row_error(key, source, location, self.id_field, problem)
            key = cast(RowKey, id_value)
        problem = text_problem(text)
        if problem is not None:
            return row_error(key, source, location, config.text_field, problem)
        text = cast(str, text)
        limit = config.model.max_tokens
        if raw_len > limit and bytes_exceed(text, limit):
            # A giant text is never tokenized in full: its length proves it too long, and
            # truncation needs only a bounded prefix (see batch_embed.tokens).
            ids = None if surely_over(text, limit) else encode_tokens(text)
            if ids is None or len(ids) > limit:
                if not config.truncate:
                    size = (
                        f"{len(text)} characters, more tokens than"
                        if ids is None
                        else f"{len(ids)} tokens, more than"
                    )
                    reason = f"text has {size} the model's limit of {limit} (truncation is off)"
                    kind = ErrorKind.TOO_LONG
                    return row_error(key, source, location, config.text_field, reason, kind)
                if ids is None:
                    ids = encode_tokens(bounded_prefix(text, limit))
                text = truncate_tokens(ids, limit)
                self.stats[source].truncated += 1
        return Row(key, text, source, location, text_hash(text))
