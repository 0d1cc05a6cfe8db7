"""Run every benchmark in turn; ``--quick`` passes ``--quick`` to each (small sizes).

Each script prints its table and writes ``benchmarks/results/<name>.json``.

    python benchmarks/run_all.py [--quick] [--only budget,overask]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("decode_write", "client_cost", "budget", "overask", "long_tail", "memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="small sizes in every script")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset")
    args = parser.parse_args()
    failed = []
    for name in args.only.split(","):
        print(f"\n=== {name} ===", flush=True)
        cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        if subprocess.run(cmd, cwd=HERE).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
