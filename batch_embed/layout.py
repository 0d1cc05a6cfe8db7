"""Where a run's files go, derived from the output the user names.

``OUT`` ending in ``.parquet`` is one file: parts are staged in ``OUT.batch_embed/parts/``
and merged into ``OUT`` atomically at the end. Any other ``OUT`` is a directory that
receives the part files themselves. Either way the journal (and its lock) lives in
``OUT.batch_embed/`` beside the output (or in ``--state-dir``), and rows that could not be
embedded go to ``<OUT without .parquet>.errors.jsonl`` beside it, unless ``--errors`` says
otherwise.

An output in object storage (``s3://bucket/prefix``) has the same two shapes, but the
journal stays on local disk: in ``--state-dir``, by default under the user's cache
directory (``$XDG_CACHE_HOME/batch_embed/`` or ``~/.cache/batch_embed/``) in a directory
named by a hash of the output's URI, so the same output finds the same journal every
night. Parts are committed there first, then published (:mod:`batch_embed.output_store`);
an errors file in object storage is written there and uploaded at the end of the run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from .errors import ConfigError, InputError
from .output_store import RemoteParts, StoredFile
from .storage import for_writing, is_uri, remote

STATE_SUFFIX = ".batch_embed"
JOURNAL_FILE = "journal.sqlite"

Target = Path | str
"""An output or errors location: a local path, or a URI (a str) in object storage."""


@dataclass(frozen=True, slots=True)
class OutputLayout:
    """The paths of one run."""

    name: str
    """The output as the user named it (a path or a URI)."""
    output: Path | None
    """The local output, file or directory; None when the output is in object storage."""
    single_file: bool
    parts_dir: Path
    """Where parts are committed on local disk (the output directory itself when local)."""
    state_dir: Path
    journal: Path
    errors: Path
    """The errors file the run writes on local disk."""
    final: StoredFile | None = None
    """The single output file (local or remote); None for a directory output."""
    published: RemoteParts | None = None
    """A directory output in object storage, which receives the committed parts."""
    errors_upload: StoredFile | None = None
    """Where the errors file goes at the end of the run, when that is object storage."""

    @property
    def is_remote(self) -> bool:
        return self.output is None

    def remote_targets(self) -> list[StoredFile]:
        """The files this run will write in object storage (one per place written)."""
        targets = [] if self.final is None or self.final.is_local else [self.final]
        if self.published is not None:
            targets.append(self.published.file("part-000000.parquet"))
        if self.errors_upload is not None:
            targets.append(self.errors_upload)
        return targets


def errors_name(layout: OutputLayout) -> str:
    """The errors file as the user knows it: the object it is uploaded to, or the local file."""
    return str(layout.errors_upload or layout.errors)


def layout_for(
    output: Target, errors: Target | None = None, state_dir: Path | None = None
) -> OutputLayout:
    """Derive every path of a run from the output (and explicit errors and state paths).

    ``state_dir`` (``--state-dir``) puts the journal and the staged parts elsewhere than
    ``OUT.batch_embed/`` (a faster disk, a directory the output's readers never see).
    """
    if isinstance(output, str) and is_uri(output):
        return _remote_layout(output.rstrip("/"), errors, state_dir)
    output = Path(output)
    single = output.suffix == ".parquet" and not output.is_dir()
    state = state_dir_of(output, state_dir)
    default_errors = output.with_name(_stem(output.name) + ".errors.jsonl")
    errors_path, upload = _errors(errors, default_errors, state)
    return OutputLayout(
        name=str(output),
        output=output,
        single_file=single,
        parts_dir=state / "parts" if single else output,
        state_dir=state,
        journal=state / JOURNAL_FILE,
        errors=errors_path,
        final=StoredFile.local(output) if single else None,
        errors_upload=upload,
    )


def _remote_layout(uri: str, errors: Target | None, state_dir: Path | None) -> OutputLayout:
    fs, path = _store(uri)
    state = state_dir_of(uri, state_dir)
    single = uri.endswith(".parquet")
    parent_uri, _, name = uri.rpartition("/")
    parent_path = path.rpartition("/")[0]
    default_errors = StoredFile(
        f"{parent_path}/{_stem(name)}.errors.jsonl", fs, f"{parent_uri}/{_stem(name)}.errors.jsonl"
    )
    errors_path: Path = state / "errors.jsonl"
    upload: StoredFile | None = default_errors
    if errors is not None:
        errors_path, upload = _errors(errors, errors_path, state)
    return OutputLayout(
        name=uri,
        output=None,
        single_file=single,
        parts_dir=state / "parts",
        state_dir=state,
        journal=state / JOURNAL_FILE,
        errors=errors_path,
        final=StoredFile(path, fs, uri) if single else None,
        published=None if single else RemoteParts(fs, path, uri),
        errors_upload=upload,
    )


def _errors(errors: Target | None, default: Path, state: Path) -> tuple[Path, StoredFile | None]:
    """The local errors file, and the object it is uploaded to (None when it is local)."""
    if errors is None:
        return default, None
    if isinstance(errors, str) and is_uri(errors):
        fs, path = _store(errors)
        return state / "errors.jsonl", StoredFile(path, fs, errors)
    return Path(errors), None


def state_dir_of(output: Target, state_dir: Path | None = None) -> Path:
    """The state directory of ``output``: ``state_dir`` when given, else ``OUT.batch_embed``
    beside a local output, else one under the user's cache (:func:`default_state_dir`)."""
    if state_dir is not None:
        return Path(state_dir)
    if isinstance(output, str) and is_uri(output):
        return default_state_dir(output.rstrip("/"))
    output = Path(output)
    return output.with_name(output.name + STATE_SUFFIX)


def default_state_dir(uri: str) -> Path:
    """The local state directory of an output in object storage, under the user's cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(base) / "batch_embed" / f"{_stem(uri.rpartition('/')[2]) or 'output'}-{digest}"


def _store(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        fs, path = remote(uri)
    except InputError as err:
        raise ConfigError(f"output {uri}: {err.reason}") from None
    return for_writing(fs), path


def _stem(name: str) -> str:
    return name[: -len(".parquet")] if name.endswith(".parquet") else name
