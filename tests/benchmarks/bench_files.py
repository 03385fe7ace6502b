"""Many small files (run by hand): 200 .grad files of 4 statements each, checked by one whole
`gradcheck check DIR` process, and by `gradcheck check DIR -j 2` (two worker processes).

    python tests/benchmarks/bench_files.py [--count 200] [--repeat 3]

Every figure is a whole process, timed with time.perf_counter; medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILE = "x = 0.5\ny = -1.5\nq = x * y\nf = exp(q) + q\n"


def timed(cmd: list, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.count):
            (Path(tmp) / f"f{i:03d}.grad").write_text(FILE, encoding="utf-8")
        cmd = [sys.executable, "-m", "gradcheck_cli", "check", tmp]
        one = timed(cmd, args.repeat)
        two = timed(cmd + ["-j", "2"], args.repeat)
    print(f"{args.count} small files (4 statements each): {one:.2f} s in one process, {two:.2f} s with -j 2 "
          f"(medians of {args.repeat})")


if __name__ == "__main__":
    main()
