"""What a run writes must never be read as its input: the run's own paths, and the rules.

A run writes its output (one file, or a directory of part files), its errors file and its
state directory (the journal, staged parts). Input resolution asks :class:`OwnPaths`:

- a name the user gives explicitly (a file, or a glob's match) that is one of these paths
  is refused: the user asked to read what the run writes;
- an input directory that is the output directory or the state directory, or lies inside
  one of them, is refused: every file in it is the run's own;
- the run's own files and directories found while walking an input directory are left out,
  so ``run data/ --output data/vectors.parquet`` (or ``--output data/vectors/``) works night
  after night.

All comparisons are on resolved paths (symlinks and ``..`` followed), so two spellings of
one place are one place. Every refusal is a :class:`ConfigError` raised while the inputs are
resolved: before the journal is opened and before any request is made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .layout import OutputLayout

ADVICE = "choose an --output (and --errors) outside the inputs"


@dataclass(frozen=True, slots=True)
class _Own:
    """One path the run writes: as resolved, as the user spelled it, and what it is."""

    real: Path
    given: Path
    what: str

    @classmethod
    def at(cls, given: Path, what: str) -> _Own:
        return cls(given.resolve(), given, f"{what} {given}")


@dataclass(frozen=True, slots=True)
class OwnPaths:
    """The files and directories one run writes."""

    files: tuple[_Own, ...] = ()
    dirs: tuple[_Own, ...] = ()
    remote_files: tuple[tuple[str, str], ...] = ()
    """(URI, what) of the objects the run writes in object storage."""
    remote_dirs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, layout: OutputLayout) -> OwnPaths:
        """The paths of the run laid out as ``layout``."""
        files = [_Own.at(layout.errors, "the errors file")]
        dirs = [_Own.at(layout.state_dir, "the journal directory")]
        remote_files: list[tuple[str, str]] = []
        remote_dirs: list[tuple[str, str]] = []
        if layout.output is None:
            what = "the output" if layout.single_file else "the output directory"
            (remote_files if layout.single_file else remote_dirs).append(
                (layout.name, f"{what} {layout.name}")
            )
        elif layout.single_file:
            files.insert(0, _Own.at(layout.output, "the output"))
        else:
            dirs.insert(0, _Own.at(layout.output, "the output directory"))
        if layout.errors_upload is not None:
            remote_files.append(
                (str(layout.errors_upload), f"the errors file {layout.errors_upload}")
            )
        return cls(tuple(files), tuple(dirs), tuple(remote_files), tuple(remote_dirs))

    @classmethod
    def directories(
        cls, local: Sequence[tuple[Path, str]], remote: Sequence[tuple[str, str]]
    ) -> OwnPaths:
        """A run that writes only directories: local (path, what) and remote (URI, what)."""
        dirs = tuple(_Own.at(path, what) for path, what in local)
        remote_dirs = tuple((uri.rstrip("/"), f"{what} {uri}") for uri, what in remote)
        return cls(dirs=dirs, remote_dirs=remote_dirs)

    def remote_owner(self, uri: str) -> str | None:
        """What of the run the object or prefix ``uri`` is or lies in (None: not the run's)."""
        uri = uri.rstrip("/")
        for own, what in self.remote_files:
            if uri == own:
                return what
        for own, what in self.remote_dirs:
            if uri == own or uri.startswith(own + "/"):
                return what
        return None

    def check_remote(self, name: str, *, pattern: bool) -> None:
        """Refuse an input URI (an object, a prefix, or a glob) that is or holds the run's."""
        what = self.remote_owner(name)
        if what is None and pattern:
            matches = glob_regex(name).fullmatch
            what = next((w for own, w in self.remote_files if matches(own)), None)
        if what is not None:
            raise ConfigError(f"input {name} is {what} of this run; {ADVICE}")

    def owner(self, path: Path) -> str | None:
        """What of the run ``path`` is or lies in (None: not the run's)."""
        return self.owner_of_real(path.resolve())

    def owner_of_real(self, real: Path) -> str | None:
        """:meth:`owner` of a path already resolved (no system call)."""
        for own in self.files:
            if real == own.real:
                return own.what
        for own in self.dirs:
            if real == own.real or real.is_relative_to(own.real):
                return own.what
        return None

    def check_named(self, name: str, path: Path) -> None:
        """Refuse an input the user named (a file or a glob's match) that the run writes."""
        what = self.owner(path)
        if what is not None:
            shown = name if str(path) == name else f"{name} ({path})"
            raise ConfigError(f"input {shown} is {what} of this run; {ADVICE}")

    def check_glob(self, pattern: str) -> None:
        """Refuse a glob that matches the output or the errors file, whether or not it exists.

        Checked on the pattern itself, not only on what is on disk, so that the first night
        (before the run has written its output) is refused as the second would be.
        """
        matches = glob_regex(os.path.abspath(pattern)).fullmatch
        for own in self.files:
            if matches(str(own.real)) or matches(os.path.abspath(own.given)):
                raise ConfigError(
                    f"input pattern {pattern} matches {own.what} of this run; {ADVICE}"
                )

    def check_directory(self, name: str, path: Path) -> None:
        """Refuse an input directory that is, or lies inside, a directory the run writes to."""
        what = self.owner(path)
        if what is not None:
            raise ConfigError(f"input directory {name} is or lies in {what}; {ADVICE}")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression matching what :func:`glob.glob` (``recursive=True``) matches."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))
