"""Decode and write alone: vectors/s through result parsing, and through Parquet writing.

Parsing: a realistic COMPLETED result body (bytes, as off the wire) whose ``output`` is the
OpenAI embeddings object serialized in a JSON string, 3072 floats. batch_embed's way is
``vectors.fast_vector`` (simdjson straight into a float buffer, checks), which the client
tries first; its general path, for any other shape, is ``orjson.loads`` of the body, then
``vectors.parse_output`` (decodes the string, float32, checks). The SDK's way:
``json.loads`` of the body, ``json.loads`` of the output, ``list``.
Writing: ``writer.PartWriter.add`` + commits of 4096-row parts (fsync included).

    python benchmarks/decode_write.py [--vectors 2000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _common import print_table, write_results

from batch_embed.models import model_spec
from batch_embed.vectors import fast_vector, parse_output
from batch_embed.writer import PartWriter


def body(dim: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    vector = rng.standard_normal(dim)
    vector /= np.linalg.norm(vector)
    output = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [float(x) for x in vector]}],
        "model": "text-embedding-3-large",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
    return json.dumps(
        {
            "status": "COMPLETED",
            "request_id": "0" * 32,
            "output": json.dumps(output),
            "metrics": {"inference_time": 0.42},
        }
    ).encode()


def timed(n: int, fn: Any) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--vectors", type=int, default=2000, help="parses per method")
    parser.add_argument("--rows", type=int, default=16384, help="rows written")
    parser.add_argument("--quick", action="store_true", help="500 parses, 8192 rows")
    args = parser.parse_args()
    if args.quick:
        args.vectors, args.rows = 500, 8192
    spec = model_spec("text-embedding-3-large")
    raw = body(spec.dim)

    def fast() -> None:
        if fast_vector(raw, dim=spec.dim) is None:
            raise AssertionError("the benchmark body must take the fast path")

    def ours() -> None:
        parse_output(orjson.loads(raw)["output"], dim=spec.dim)

    def sdk() -> None:
        list(json.loads(json.loads(raw)["output"])["data"][0]["embedding"])

    rows = []
    for name, fn in (
        ("batch_embed fast path (simdjson, fast_vector)", fast),
        ("batch_embed general path (orjson + parse_output)", ours),
        ("SDK way (json.loads x2 + list)", sdk),
    ):
        fn()
        rate = timed(args.vectors, fn)
        rows.append(
            {"stage": name, "vectors_per_s": round(rate), "us_per_vector": round(1e6 / rate, 1)}
        )

    vectors = np.random.default_rng(1).standard_normal((4096, spec.dim)).astype(np.float32)
    hashes = [f"{i:064x}" for i in range(4096)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with PartWriter(Path(tmp) / "parts", model=spec, key_type="int") as writer:
            for i in range(args.rows):
                writer.add(i, hashes[i % 4096], vectors[i % 4096])
        elapsed = time.perf_counter() - start
    rows.append(
        {
            "stage": "PartWriter add + commit (4096-row parts, fsync)",
            "vectors_per_s": round(args.rows / elapsed),
            "us_per_vector": round(elapsed / args.rows * 1e6, 1),
        }
    )
    print(f"{spec.dim} floats per vector; body {len(raw):,} bytes")
    print_table(rows, ("stage", "vectors_per_s", "us_per_vector"))
    write_results("decode_write", {"dim": spec.dim, "body_bytes": len(raw), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
