"""Input resolution: the files, directories and globs a user names -> input files, in order.

Each name is a file (its ending says the format), a directory (walked recursively, hidden
entries skipped, files sorted by relative path) or a glob. A file's ``source`` keeps the
spelling the user gave, so messages and derived keys are stable across runs. Reading the
files is :mod:`batch_embed.reader`'s job; this module only finds them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError, InputError
from .overlap import OwnPaths

Format = Literal["jsonl", "parquet"]

SUFFIXES: dict[str, tuple[Format, bool]] = {
    ".jsonl": ("jsonl", False),
    ".ndjson": ("jsonl", False),
    ".jsonl.gz": ("jsonl", True),
    ".ndjson.gz": ("jsonl", True),
    ".parquet": ("parquet", False),
}
"""Accepted file name endings (matched case-insensitively) -> (format, gzip-compressed)."""
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class InputFile:
    """One resolved input file; ``source`` is its name in messages and derived keys."""

    path: Path
    source: str
    format: Format
    compressed: bool


def _classify(name: str) -> tuple[Format, bool] | None:
    lower = name.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _input_file(path: Path, source: str) -> InputFile | None:
    kind = _classify(path.name)
    return None if kind is None else InputFile(path, source, kind[0], kind[1])


def _expand(pattern: str, own: OwnPaths) -> list[InputFile]:
    """Resolve one user-given name: a file, a directory (recursive) or a glob."""
    path = Path(pattern)
    accepted = ", ".join(SUFFIXES)
    try:
        is_dir, is_file = path.is_dir(), path.exists() and not path.is_dir()
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}", path=pattern) from err
    if is_file:
        own.check_named(pattern, path)
        found = _input_file(path, pattern)
        if found is None:
            raise InputError(f"unknown file type; accepted endings: {accepted}", path=pattern)
        return [found]
    if is_dir:
        own.check_directory(pattern, path)
        # Hidden files and folders are skipped, like pyarrow's dataset discovery does, and
        # so are the run's own files (its output, errors file and journal directory).
        files = []
        for root, dirs, names in os.walk(path):
            real_root = Path(root).resolve()
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".") and own.owner_of_real(real_root / d) is None
            ]
            rel_root = Path(root).relative_to(path)
            for name in names:
                if name.startswith(".") or own.owner_of_real(real_root / name) is not None:
                    continue
                rel = (rel_root / name).as_posix()
                found = _input_file(Path(root, name), os.path.join(pattern, rel))
                if found is not None:
                    files.append((rel, found))
        if not files:
            raise InputError(f"directory holds no input files ({accepted})", path=pattern)
        return [found for _, found in sorted(files, key=lambda pair: pair[0])]
    if _GLOB_CHARS.isdisjoint(pattern):
        raise InputError("no such file or directory", path=pattern)
    own.check_glob(pattern)
    matches = sorted(glob.glob(pattern, recursive=True))
    for match in matches:
        own.check_named(pattern, Path(match))
    found_files = [f for m in matches if os.path.isfile(m) and (f := _input_file(Path(m), m))]
    if not found_files:
        what = f"{len(matches)} paths, none an input file" if matches else "nothing"
        raise InputError(f"pattern matches {what} ({accepted})", path=pattern)
    return found_files


def resolve_inputs(patterns: Sequence[str], own: OwnPaths | None = None) -> list[InputFile]:
    """Expand file names, directories and globs into input files, in a stable order.

    Directories are walked recursively and their files sorted by relative path; a file's
    ``source`` keeps the spelling the user gave (``data/sub/a.jsonl`` for the directory
    ``data``), so derived keys are stable across runs. A file reached twice is read once.
    ``own`` (the paths the run writes) are refused when named and left out when walked.
    """
    own = own or OwnPaths()
    if isinstance(patterns, str) or not patterns:
        raise ConfigError("inputs: give a list of one or more files, directories or globs")
    seen: set[Path] = set()
    result = []
    for pattern in patterns:
        for found in _expand(pattern, own):
            real = found.path.resolve()
            if real not in seen:
                seen.add(real)
                result.append(found)
    return result
