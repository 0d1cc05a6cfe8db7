"""The output's files wherever they live: the local disk, or object storage through pyarrow.fs.

A :class:`StoredFile` is one Parquet file of the output (or its errors file): read with
pyarrow.parquet whatever its store, and replaced atomically. Locally that is the writer's
temporary file, fsync and rename. In object storage it is a stream to a hidden
``_<name>.<random>.tmp`` object beside it (a leading ``_`` hides it from pyarrow.dataset,
and the suffix from ``*.parquet`` globs), then one move to the final name: the store's
copy of a whole object, which no reader ever sees half-done. A failed write deletes its
temporary object.

:class:`RemoteParts` is an output directory in object storage: parts are written and
committed on local disk as for a local output (in the state directory), then published,
each under the next free part number of the remote prefix, and deleted locally. A part
committed locally but not yet published (a run killed between the two) is published by the
next run before it reads what the output holds. One writer per output at a time: the
local journal's lock guards one machine, not two machines writing one prefix.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import ConfigError
from .write_failures import writing

PART_NAME = re.compile(r"part-(\d+)\.parquet")
_TMP_NAME = re.compile(r"_part-\d+\.parquet\.[0-9a-f]{12}\.tmp")
COPY_BUFFER = 8 << 20


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of the output: local (``fs`` None) or an object of a pyarrow file system."""

    path: str
    fs: pafs.FileSystem | None = None
    uri: str = ""
    """How to name it to the user (``s3://bucket/key``); the path itself when local."""

    @classmethod
    def local(cls, path: Path) -> StoredFile:
        return cls(str(path))

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return self.fs is None

    def __str__(self) -> str:
        return self.uri or self.path

    def exists(self) -> bool:
        if self.fs is None:
            return Path(self.path).is_file()
        return bool(self.fs.get_file_info(self.path).type == pafs.FileType.File)

    def parquet(self, **options: object) -> pq.ParquetFile:
        return pq.ParquetFile(self.path, filesystem=self.fs, **options)

    def schema(self) -> pa.Schema:
        return pq.read_schema(self.path, filesystem=self.fs)

    def metadata(self) -> pq.FileMetaData:
        return pq.read_metadata(self.path, filesystem=self.fs)

    def delete(self) -> None:
        if self.fs is None:
            Path(self.path).unlink(missing_ok=True)
        elif self.exists():
            self.fs.delete_file(self.path)

    def replace(self, write: Callable[[BinaryIO], None]) -> None:
        """Write the file anew with ``write(stream)``, atomically (see the module doc)."""
        if self.fs is None:
            final = Path(self.path)
            write_atomically(final, write)
            fsync_dir(final.parent)
            return
        parent, _, name = self.path.rpartition("/")
        tmp = f"{parent}/_{name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            with writing(str(self)):
                with self.fs.open_output_stream(tmp, compression=None) as out:
                    write(cast(BinaryIO, out))
                self.fs.move(tmp, self.path)
        except BaseException:
            _delete_quietly(self.fs, tmp)
            raise

    def upload(self, local: Path) -> None:
        """Replace this file with the bytes of the local file ``local``."""

        def copy(out: BinaryIO) -> None:
            with open(local, "rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER)

        self.replace(copy)


def check_writable(file: StoredFile) -> None:
    """Write and delete a small hidden object beside ``file`` (ConfigError if refused).

    Run before the first paid call, so a missing bucket, a wrong endpoint or a read-only
    credential stops the run before anything is paid, not at its first part.
    """
    assert file.fs is not None
    parent, _, name = file.path.rpartition("/")
    probe = f"{parent}/_{name}.probe.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with file.fs.open_output_stream(probe, compression=None) as out:
            out.write(b"batch_embed write check")
        file.fs.delete_file(probe)
    except (OSError, pa.ArrowException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"output {file} cannot be written: {first}") from None


def write_atomically(final: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write to ``.<name>.tmp``, fsync, rename to ``final``; the caller fsyncs the directory."""
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        with writing(final), open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with writing(directory):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class RemoteParts:
    """The committed parts of an output directory in object storage (see the module doc)."""

    def __init__(self, fs: pafs.FileSystem, path: str, uri: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.uri = uri.rstrip("/")
        self._next: int | None = None

    def parts(self) -> list[StoredFile]:
        """The committed parts, in part-number order."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        found: list[tuple[int, StoredFile]] = []
        for info in self.fs.get_file_info(selector):
            match = PART_NAME.fullmatch(info.base_name)
            if info.type == pafs.FileType.File and match:
                found.append((int(match.group(1)), self.file(info.base_name)))
        return [file for _, file in sorted(found, key=lambda pair: pair[0])]

    def sweep(self) -> int:
        """Delete the temporary objects of uploads a killed run never moved; return them."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        stray = [
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and _TMP_NAME.fullmatch(info.base_name)
        ]
        for path in stray:
            _delete_quietly(self.fs, path)
        return len(stray)

    def file(self, name: str) -> StoredFile:
        return StoredFile(f"{self.path}/{name}", self.fs, f"{self.uri}/{name}")

    def publish(self, local: Path) -> StoredFile:
        """Upload one locally committed part as the next part, then delete it locally."""
        if self._next is None:
            parts = self.parts()
            self._next = _index(parts[-1]) + 1 if parts else 0
        target = self.file(f"part-{self._next:06d}.parquet")
        target.upload(local)
        self._next += 1
        local.unlink(missing_ok=True)
        return target


def _index(file: StoredFile) -> int:
    match = PART_NAME.fullmatch(file.name)
    assert match is not None
    return int(match.group(1))


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    except (OSError, pa.ArrowException):
        pass
