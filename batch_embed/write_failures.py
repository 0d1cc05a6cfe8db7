"""A write that fails (disk full, quota, file too large, read-only, I/O error) ends the run.

Every place that writes a file of the run wraps the write in :func:`writing`, which turns
an ``OSError`` into :class:`~batch_embed.errors.WriteFailed` naming the file. SQLite does
not say which file failed, but the journal is its only file, so :func:`write_failure`
names the journal for a SQLite error. The run then stops at once: the task group of the
stages is cancelled, what was committed stays committed, and the journal keeps the
request_ids of the jobs in flight, so a run after space is freed re-attaches to them and
pays nothing extra.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BatchEmbedError, WriteFailed

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""A full disk, a quota, a file too large, a read-only file system, an I/O error."""


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into :class:`WriteFailed` for ``path``."""
    try:
        yield
    except OSError as err:
        raise WriteFailed(str(path), describe(err)) from err


def describe(err: OSError) -> str:
    """The OS's words for ``err``, with the errno's name: "No space left on device (ENOSPC)".

    pyarrow raises ``OSError("[Errno 28] No space left on device")`` without ``errno``
    set; its message is then the description.
    """
    if err.errno is not None and err.strerror:
        name = errno.errorcode.get(err.errno)
        return f"{err.strerror} ({name})" if name else err.strerror
    return str(err) or type(err).__name__


def write_failure(exc: BaseException, journal: Path) -> WriteFailed | None:
    """The write failure that ``exc`` is or holds (groups, causes, contexts), if any.

    A ``WriteFailed`` found is returned as it is; a SQLite error is the journal's; an
    ``OSError`` of a full or failing disk with a file name is that file's. Another error of
    the package (a bad input whose cause is an unreadable file) is not looked into. None
    when ``exc`` is no write failure.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, WriteFailed):
            return current
        if isinstance(current, BatchEmbedError):
            continue
        if isinstance(current, sqlite3.DatabaseError) and _is_disk(current):
            return WriteFailed(str(journal), str(current))
        if (
            isinstance(current, OSError)
            and current.filename is not None
            and current.errno in DISK_ERRNOS
        ):
            return WriteFailed(os.fsdecode(current.filename), describe(current))
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


_DISK_CODES = frozenset({"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN"})


def _is_disk(err: sqlite3.Error) -> bool:
    """Whether SQLite failed to write its file (full, I/O error, read-only, cannot open)."""
    name = getattr(err, "sqlite_errorname", None)
    if isinstance(name, str):  # extended codes too: SQLITE_IOERR_WRITE, SQLITE_READONLY_...
        return any(name == code or name.startswith(code + "_") for code in _DISK_CODES)
    text = str(err).lower()
    return "disk" in text or "readonly" in text or "unable to open" in text
