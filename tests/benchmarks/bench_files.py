"""Many small files (run by hand): 200 .grad files of 4 statements each, checked by one whole
`gradcheck check DIR` process, and by `gradcheck check DIR -j 2` (two worker processes).

    python tests/benchmarks/bench_files.py [--count 200] [--repeat 3]

Every figure is a whole process, timed with time.perf_counter; medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_conv import whole as timed  # noqa: E402  (a whole process's median time, failing on a non-zero exit)

FILE = "x = 0.5\ny = -1.5\nq = x * y\nf = exp(q) + q\n"


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
