"""One run per output: an exclusive ``flock`` on a file in the output's state directory.

The kernel releases it when the process dies, however it dies, so a killed run never
leaves a stale lock; the file holds the holder's pid, which the refusal names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import JournalLocked


def lock_beside(journal: Path) -> Path:
    """The lock file of a journal (every engine's runs on one output take the same one)."""
    return journal.with_name(journal.name + ".lock")


def take_lock(path: Path) -> int:
    """Lock ``path`` (created if missing) for this process; its file descriptor.

    Raises JournalLocked, naming the holder's pid, when another live process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise JournalLocked(
            f"{path.parent} is in use by a running batch-embed (pid {holder}); wait for it "
            "to finish or stop it, then run again"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Release and close a lock taken with :func:`take_lock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
