"""Time `ldbench run --suite smoke` cold (empty cache) and fully cached, whole processes as a user waits for
them, against the targets (cold <= 150 s, cached <= 15 s on 2 CPU cores), and check the cached rerun
reproduces the numbers.

    python benchmarks/perf/bench_smoke.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"cold": 150.0, "cached": 15.0}


def run(cache: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ldbench.cli", "run", "--suite", "smoke", "--cache-dir", str(cache),
                    "--out", str(out), "--quiet"], check=True)
    return time.perf_counter() - start


def values(out: Path) -> list:
    return [(r["metric"], r["editor"], r["drift"], r["value"], r["ci95"])
            for r in json.loads((out / "results.json").read_text())["records"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="keep cache and outputs here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="ldbench-bench-"))
    cold = run(root / "cache", root / "out-cold")
    cached = run(root / "cache", root / "out-cached")
    same = values(root / "out-cold") == values(root / "out-cached")
    for name, seconds in (("cold", cold), ("cached", cached)):
        print(f"{name:7s} {seconds:7.1f} s   target {TARGETS[name]:5.0f} s   ratio {seconds / TARGETS[name]:.2f}")
    print(f"cached rerun reproduces every number: {same}")
    sys.exit(0 if same and cold <= TARGETS["cold"] and cached <= TARGETS["cached"] else 1)


if __name__ == "__main__":
    main()
