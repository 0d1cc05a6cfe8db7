"""Outputs in object storage: a run to an S3 prefix and to one S3 object, against a local
directory output (the baseline, in the same run).

S3 is a moto server on 127.0.0.1 in a process of its own (``moto_server``, from the ``s3``
extra); the emulator runs in another. Each run is a child process (``python -m batch_embed
run ... --quiet``); peak RSS is the child's ``ru_maxrss`` (os.wait4), paid calls the
emulator's ``jobs_created``. Each S3 case runs at N and 2N rows, so a memory that grows with
the corpus shows. A second night on the prefix with its journal deleted must pay nothing.
moto is a Python server: the walls measure it as much as the client.

    python benchmarks/s3_output.py [--rows 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from _common import emulator, print_table, run_child, verdict, write_results

ACCESS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


@contextmanager
def moto(port: int) -> Iterator[pafs.S3FileSystem]:
    binary = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        fs = pafs.S3FileSystem(
            access_key=ACCESS["AWS_ACCESS_KEY_ID"],
            secret_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            endpoint_override=f"http://127.0.0.1:{port}",
            allow_bucket_creation=True,
        )
        fs.create_dir("bench")
        yield fs
    finally:
        server.terminate()
        server.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_corpus(path: Path, rows: int) -> None:
    with open(path, "wb") as out:
        for i in range(rows):
            out.write(orjson.dumps({"id": i, "text": f"s3 bench row {i}"}) + b"\n")


def run(source: Path, out: str, url: str, env: dict[str, str]) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "batch_embed", "run", str(source), "--output", out,
        "--id-field", "id", "--model", "text-embedding-3-small", "--base-url", url,
        "--rpm", "120000", "--read-rate", "4000", "--quiet",
    ]  # fmt: skip
    return run_child(cmd, env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    port = free_port()
    table: list[dict[str, Any]] = []
    with (
        emulator("--latency", "0-0.05") as emu,
        moto(port) as fs,
        tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp,
    ):
        work = Path(tmp)
        env = {
            **os.environ,
            **ACCESS,
            "SEGMIND_API_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "XDG_CACHE_HOME": str(work / "cache"),
        }
        cases = [
            ("local directory (baseline)", args.rows, str(work / "local")),
            ("s3 prefix", args.rows, "s3://bench/prefix-n"),
            ("s3 prefix", 2 * args.rows, "s3://bench/prefix-2n"),
            ("s3 single file", args.rows, "s3://bench/single-n.parquet"),
            ("s3 single file", 2 * args.rows, "s3://bench/single-2n.parquet"),
        ]
        for label, rows, out in cases:
            source = work / f"in-{rows}.jsonl"
            if not source.exists():
                write_corpus(source, rows)
            before = emu.stats()["jobs_created"]
            result = run(source, out, emu.url, env)
            paid = emu.stats()["jobs_created"] - before
            path = out.removeprefix("s3://")
            stored = (
                pads.dataset(path, filesystem=fs, format="parquet").count_rows()
                if out.startswith("s3://")
                else pads.dataset(out, format="parquet").count_rows()
            )
            row = {"run": label, "rows": rows, "paid": paid, "stored": stored, **result}
            table.append(row)
            print(row, flush=True)
        shutil.rmtree(work / "cache")  # every journal gone: the outputs are the record
        before = emu.stats()["jobs_created"]
        again = run(work / f"in-{args.rows}.jsonl", "s3://bench/prefix-n", emu.url, env)
        paid = emu.stats()["jobs_created"] - before
        table.append(
            {"run": "s3 prefix, night 2, no journal", "rows": args.rows, "paid": paid, **again}
        )
    print(f"\n{args.rows:,} and {2 * args.rows:,} rows (text-embedding-3-small); moto and the")
    print("emulator in processes of their own")
    print_table(table, ("run", "rows", "exit", "paid", "stored", "wall_s", "peak_rss_mb"))
    s3_runs = [r for r in table[1:5]]
    grows = max(r["peak_rss_mb"] for r in s3_runs[1::2]) - max(
        r["peak_rss_mb"] for r in s3_runs[0::2]
    )
    targets = [
        {
            "target": "every row stored once, paid once",
            "value": ", ".join(f"{r['stored']}/{r['rows']}" for r in table[:5]),
            "result": verdict(all(r["stored"] == r["rows"] == r["paid"] for r in table[:5])),
        },
        {
            "target": "peak RSS flat from N to 2N rows (within 40 MB)",
            "value": f"{grows:+d} MB",
            "result": verdict(grows <= 40),
        },
        {
            "target": "night 2 without its journal pays nothing",
            "value": str(table[-1]["paid"]),
            "result": verdict(table[-1]["paid"] == 0 and table[-1]["exit"] == 0),
        },
    ]
    print()
    print_table(targets, ("target", "value", "result"))
    write_results("s3_output", {"rows": args.rows, "runs": table, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
