"""A real S3 API for tests: a moto server on 127.0.0.1, and the AWS_* environment pointing at it.

pyarrow.fs reaches it as it reaches S3 (from AWS_ENDPOINT_URL and the AWS_* credentials);
the tests' own file system object talks to it directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.fs as pafs
from moto.server import ThreadedMotoServer

SECRET = "s3-secret-key-not-to-be-printed-42"


@dataclass(frozen=True)
class S3:
    env: dict[str, str]
    """The environment a CLI child needs to reach the server."""
    fs: pafs.S3FileSystem


@contextmanager
def moto_s3(*buckets: str) -> Iterator[S3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ACCESS_KEY_ID": "test-access",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }
        fs = pafs.S3FileSystem(
            access_key="test-access",
            secret_key=SECRET,
            region="us-east-1",
            endpoint_override=env["AWS_ENDPOINT_URL"],
            allow_bucket_creation=True,
        )
        for bucket in buckets:
            fs.create_dir(bucket)
        yield S3(env, fs)
    finally:
        server.stop()


def put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path, compression=None) as out:
        out.write(data)


def get(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path, compression=None) as source:
        return bytes(source.read())


def names(fs: pafs.FileSystem, prefix: str) -> list[str]:
    """The object names under ``prefix`` (recursive), relative to it, sorted."""
    found = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(
        info.path[len(prefix) :].lstrip("/") for info in found if info.type == pafs.FileType.File
    )
