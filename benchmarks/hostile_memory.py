"""Peak RSS of a 50-row run per hostile answer (issue 16, point 1), against a normal run.

Each case runs in a child process of its own (``--child CASE``), which serves the hostile
test server (``tests/hostile_server.py``) in a thread and runs ``batch-embed run`` as *its*
child: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` there is the CLI's peak alone. One row
in 50 gets the bad answer on every attempt. Goal: every case under 400 MB peak RSS.

    python benchmarks/hostile_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = ("normal", "result-huge", "result-gzip", "submit-huge", "status-huge")
GOAL_MB = 400.0
KEY = "sk-bench-hostile-0123456789"
ROWS = 50


def child(case: str) -> dict[str, object]:
    from tests.hostile_server import MARK, HostileServer

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        with open(source, "w") as fh:
            for i in range(ROWS):
                mark = f" {MARK}" if case != "normal" and i == 7 else ""
                fh.write(json.dumps({"id": i, "text": f"row {i} of the corpus{mark}"}) + "\n")
        bad = "result-huge" if case == "normal" else case
        with HostileServer(bad, key=KEY) as server:  # type: ignore[arg-type]
            command = [
                sys.executable, "-m", "batch_embed", "run", str(source),
                "--output", str(Path(tmp) / "out.parquet"), "--base-url", server.url,
                "--allow-insecure-http", "--rpm", "6000", "--read-rate", "400", "--quiet",
            ]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(
                command, env={"SEGMIND_API_KEY": KEY, "PATH": ""}, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            sent = server.bytes_sent
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "case": case,
        "exit": done.returncode,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "seconds": round(seconds, 1),
        "bad_bytes_sent_mb": round(sent / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = []
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", case], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout))
    base = rows[0]["peak_rss_mb"]
    print(f"{'case':<12} {'exit':>4} {'peak RSS MB':>11} {'vs normal':>9} {'s':>6} "
          f"{'bad MB sent':>11}  goal <{GOAL_MB:g} MB")  # fmt: skip
    for row in rows:
        verdict = "PASS" if row["peak_rss_mb"] < GOAL_MB else "MISS"
        print(f"{row['case']:<12} {row['exit']:>4} {row['peak_rss_mb']:>11} "
              f"{row['peak_rss_mb'] - base:>+9.1f} {row['seconds']:>6} "
              f"{row['bad_bytes_sent_mb']:>11}  {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
