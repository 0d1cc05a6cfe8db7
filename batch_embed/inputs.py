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
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.fs as pafs

from .errors import ConfigError, InputError
from .overlap import OwnPaths, glob_regex
from .storage import is_uri, open_remote, remote

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
    fs: pafs.FileSystem | None = None
    """The object store holding it (``path`` is then the path inside it); None: local."""

    def open(self) -> BinaryIO:
        """The file's bytes as stored (the caller decompresses); OS failures propagate."""
        if self.fs is None:
            return open(self.path, "rb")
        return open_remote(self.fs, self.path.as_posix(), self.source)

    def size(self) -> int:
        """Its size in bytes (OSError or InputError when it cannot be asked)."""
        if self.fs is None:
            return self.path.stat().st_size
        info = self.fs.get_file_info(self.path.as_posix())
        if info.type == pafs.FileType.NotFound:
            raise InputError("no such file", path=self.source)
        return int(info.size or 0)

    def parquet(self) -> str | Path | pa.NativeFile:
        """What pyarrow.parquet opens: the local path, or the remote object, seekable."""
        return self.path if self.fs is None else self.fs.open_input_file(self.path.as_posix())


def _classify(name: str) -> tuple[Format, bool] | None:
    lower = name.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _input_file(path: Path, source: str) -> InputFile | None:
    kind = _classify(path.name)
    return None if kind is None else InputFile(path, source, kind[0], kind[1])


def _expand_remote(pattern: str, own: OwnPaths) -> list[InputFile]:
    """Resolve a URI: one object, a prefix (recursive, as a directory) or a glob.

    The run's own objects (an output or errors file in object storage) are refused when
    named, and left out of a prefix or a glob that holds them.
    """
    accepted = ", ".join(SUFFIXES)
    glob_at = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=None)
    own.check_remote(pattern, pattern=glob_at is not None)
    base = pattern if glob_at is None else pattern[:glob_at].rsplit("/", 1)[0]
    fs, root = remote(base)
    try:
        info = fs.get_file_info(root)
        if glob_at is None and info.type == pafs.FileType.File:
            found = _input_file(Path(root), pattern)
            if found is None:
                raise InputError(f"unknown file type; accepted endings: {accepted}", path=pattern)
            return [InputFile(found.path, pattern, found.format, found.compressed, fs)]
        if info.type != pafs.FileType.Directory:
            raise InputError("no such file, prefix or bucket", path=pattern)
        listed = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"cannot be listed: {str(err).splitlines()[0]}", path=pattern) from None
    matches = None if glob_at is None else glob_regex(pattern).fullmatch
    files = []
    for entry in listed:
        rel = entry.path[len(root) :].lstrip("/")
        hidden = any(part.startswith((".", "_")) for part in rel.split("/"))
        if entry.type != pafs.FileType.File or hidden:
            continue  # hidden, or a writer's temporary object: skipped as pyarrow.dataset does
        name = f"{base.rstrip('/')}/{rel}"
        if (matches is not None and not matches(name)) or own.remote_owner(name) is not None:
            continue
        kind = _classify(entry.path)
        if kind is not None:
            files.append(InputFile(Path(entry.path), name, kind[0], kind[1], fs))
    if not files:
        raise InputError(f"holds no input files ({accepted})", path=pattern)
    return sorted(files, key=lambda f: f.source)


def _expand(pattern: str, own: OwnPaths) -> list[InputFile]:
    """Resolve one user-given name: a file, a directory (recursive) or a glob."""
    if is_uri(pattern):
        return _expand_remote(pattern, own)
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
            real = found.path.resolve() if found.fs is None else Path(found.source)
            if real not in seen:
                seen.add(real)
                result.append(found)
    return result
